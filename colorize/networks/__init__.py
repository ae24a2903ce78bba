"""The networks: generators, discriminators, their heads, EfficientNet, colour bins, CPU kernels,
and a trained generator at work (`inference`)."""
