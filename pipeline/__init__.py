"""Reference reproduction of variational MCMC teaching (CoopVAEBM, Xie, Zheng & Li, AAAI 2021)."""

__version__ = "0.1.0"
