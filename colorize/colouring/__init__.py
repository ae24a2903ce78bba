"""Colouring photos and videos with a trained generator: the colorize mode, hints that spread, video, the app."""
