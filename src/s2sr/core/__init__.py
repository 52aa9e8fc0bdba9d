"""The core of s2sr: what every other room shares, importing nothing else of s2sr and no torch.

Its modules are the one home of each shared concept (docs/architecture.md lists them): the
version, every error class, the constants, validation of numbers, choices and paths,
DN <-> reflectance, file safety (atomic writes, temporaries) and signals.
"""
