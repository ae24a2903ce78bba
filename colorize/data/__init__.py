"""Photos in: opening photo files safely, the training and validation sources, crops and batches."""
