"""A training step's forward, loss and backward captured once into a CUDA graph, then replayed
(`cuda_graph`): GraphedStep does it for any step function, GraphedClassifier for the module.

Eager PyTorch launches each of a step's kernels from Python: about a thousand at depth 110, each
costing more host time than the GPU needs to run it. A CUDA graph replays them all in one launch.
The optimizer's update stays outside the graph (SGD's foreach update is a few launches), so
Lightning still runs it, counts the step and checkpoints the optimizer as usual.

The rules a graph imposes, and how this module keeps them:
- fixed shapes and addresses: batches are copied into static input tensors (the training loader
  drops its ragged last batch; any other shape is refused);
- gradients live in the graph's memory: they are set to None once before capture, so capture
  allocates them there and every replay overwrites them; nothing may set them to None afterwards
  (GraphedClassifier keeps Lightning from doing so before validation);
- no host sync inside the step, and the warm-up that cuDNN's autotuning needs happens on a side
  stream before capture; the BatchNorm statistics it moves are put back, so the graphed run
  follows the eager run's trajectory.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from depthsweep.training.module import Classifier

StepFn = Callable[[Tensor, Tensor], tuple[Tensor, ...]]


def _uncached_autocast(device_type: str) -> AbstractContextManager:
    """The current autocast setting (e.g. Lightning's bf16-mixed) without its cast cache: cached
    casts made outside the graph would be stale inside it."""
    return torch.autocast(
        device_type,
        dtype=torch.get_autocast_dtype(device_type),
        enabled=torch.is_autocast_enabled(device_type),
        cache_enabled=False,
    )


class GraphedStep:
    """`fn(x, y)` runs forward, loss and backward and returns detached tensors (loss, ...).

    On a GPU the first call captures it into a CUDA graph and every call replays that graph; on a
    CPU every call simply runs it after clearing the gradients, so the same path is testable there.
    """

    def __init__(self, fn: StepFn, model: nn.Module, warmup: int = 3) -> None:
        self.fn, self.model, self.warmup = fn, model, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.x = self.y = self.out = None  # the graph's static inputs and outputs, once captured

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        if x.device.type != "cuda":
            self.model.zero_grad(set_to_none=True)
            return self.fn(x, y)
        if self.graph is None:
            self._capture(x, y)
        if x.shape != self.x.shape or y.shape != self.y.shape:  # copy_ would broadcast silently
            raise ValueError(
                f"CUDA graph captured for batches {tuple(self.x.shape)}, got {tuple(x.shape)}"
            )
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.out

    def release(self) -> None:
        """Forget the graph: after fit Lightning moves the model and frees its gradients, so the
        graph's addresses are stale; a later call captures anew."""
        self.graph = self.x = self.y = self.out = None

    def _capture(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x.clone(), y.clone()
        saved = [b.clone() for b in self.model.buffers()]
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side), _uncached_autocast("cuda"):
            for _ in range(self.warmup):  # cuDNN autotuning and lazy init, outside the capture
                self.model.zero_grad(set_to_none=True)
                self.fn(self.x, self.y)
        torch.cuda.current_stream(x.device).wait_stream(side)
        with torch.no_grad():
            for buffer, value in zip(self.model.buffers(), saved, strict=True):
                buffer.copy_(value)  # undo the warm-up's BatchNorm running-statistics updates
        self.model.zero_grad(set_to_none=True)  # capture allocates the gradients in its pool
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), _uncached_autocast("cuda"):
            self.out = self.fn(self.x, self.y)


class GraphedClassifier(Classifier):
    """A Classifier whose training steps' forward, loss and backward are one GraphedStep.

    It optimizes manually: the GraphedStep runs as the optimizer's closure, so that Lightning
    still counts the step and runs its hooks, then the scheduler steps where automatic
    optimization steps it (before the batch ends). On a CPU the same code runs eagerly.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False
        self.graphed = GraphedStep(self._forward_backward, self.model)

    def _forward_backward(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        outputs = self.step_outputs((x, y))
        # Backward as automatic optimization runs it, outside autocast; not manual_backward: its
        # hooks (and an fp16 loss scaler) must not run inside a graph capture.
        with torch.autocast(x.device.type, enabled=False):
            outputs["loss"].backward()
        self._output_names = list(outputs)
        return tuple(v.detach() for v in outputs.values())

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        result = ()

        def closure() -> Tensor:
            nonlocal result
            result = self.graphed(*batch)
            return result[0]

        self.optimizers().step(closure=closure)  # counts the step; on_before_optimizer_step runs
        self.lr_schedulers().step()
        return dict(zip(self._output_names, result, strict=True))

    def on_validation_model_zero_grad(self) -> None:
        """Lightning frees the gradients before validating; the captured graph owns them."""

    def on_fit_end(self) -> None:
        self.graphed.release()
