"""depthsweep: plain vs residual CIFAR-10 nets across depth (He et al. 2016, Fig. 6)."""
