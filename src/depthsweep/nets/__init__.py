"""The networks: plain and residual CIFAR nets, a CIFAR-sized GoogLeNet, their interface."""
