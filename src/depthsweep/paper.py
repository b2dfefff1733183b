"""He et al. 2016's CIFAR-10 recipe (§4.2), as far as code outside the configs needs it: the
schedule its numbers come from, the batch its lr is for, and Figure 6's depths."""

PAPER_ITERATIONS = 64_000  # lr 0.1, divided by 10 at 32k and 48k
PAPER_BATCH = 128  # the batch the lr of 0.1 is for
PAPER_DEPTHS = (20, 32, 44, 56, 110)  # Figure 6's plain and residual nets
CIFAR_CLASSES = 10  # a run's classes where data.classes picks none (or its run.json predates it)
