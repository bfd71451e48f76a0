"""A multilayer perceptron in numpy only: hand-written forward, backward, Huber and Adam.

This module stands apart from the rest of the library: it imports numpy and nothing else,
so chapter 2 can show every line of backpropagation. It serves two purposes.

* Teaching: :func:`dense_relu_backward` and :func:`adam_step` are the two exercises of the
  chapter, written as plain functions of arrays.
* Speed: :class:`MLP` can hold an *ensemble* of independent networks with a leading
  member axis (weights ``(E, n_in, n_out)``), so that ten seeds of a DQN train in one
  vectorised numpy call per layer. Every formula is written with ``...`` for the leading
  axes, so the same code serves one network (no member axis) and an ensemble.

The bugs of chapter 2 can be switched on one at a time with :class:`Bugs`, to measure
what each one does (see ``rldebug.diagnostics.gradcheck`` and ``rldebug.numpy_dqn``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    "Bugs",
    "MLP",
    "Adam",
    "adam_step",
    "dense_relu_forward",
    "dense_relu_backward",
    "huber",
    "huber_grad",
    "huber_grad_with_jump",
]


@dataclass(frozen=True)
class Bugs:
    """The bugs of a hand-written DQN, each switchable on its own.

    In the network (:class:`MLP`):

    * ``all_positive_init``: weights drawn from ``U[0, 1)`` scaled, never negative.
    * ``scalar_bias``: one bias number shared by every unit of a layer.
    * ``no_input_outer_product``: the weight "gradient" is the layer's error summed over
      the batch and copied to every input, instead of ``input.T @ error``: Adam is fed the
      error instead of the gradient.
    * ``relu_derivative_always_one``: the forward pass clamps the stored pre-activation to
      ``max(z, 0)`` in place, and the derivative then tests ``< 0`` on it: it finds no
      negative entry left, so the ReLU's derivative is 1 everywhere.
    * ``stale_weights_backprop``: each layer is updated as soon as its gradient is known,
      and the layer below receives its error through the weights *already updated*.

    In the DQN around it (``rldebug.numpy_dqn``):

    * ``scalar_loss_gradient``: the loss gradient of the taken action is pushed into every
      action's output.
    * ``huber_gradient_jump``: a Huber derivative that jumps at ``|error| = 1``: ``error / 2``
      inside, ``sign(error) / 4`` outside (:func:`huber_grad_with_jump`).
    * ``aliased_target``: the "target network" holds the online network's own arrays, so
      every in-place update moves both: the target is the online network.
    * ``single_sample_updates``: no minibatch: every sampled transition is its own Adam step
      of batch size 1, one after another.
    * ``extra_input_layer``: a ReLU layer as wide as the observation before the hidden
      layers (the question's 8-unit "input layer").
    """

    all_positive_init: bool = False
    scalar_bias: bool = False
    no_input_outer_product: bool = False
    relu_derivative_always_one: bool = False
    stale_weights_backprop: bool = False
    scalar_loss_gradient: bool = False
    huber_gradient_jump: bool = False
    aliased_target: bool = False
    single_sample_updates: bool = False
    extra_input_layer: bool = False

    @classmethod
    def only(cls, name: str | None) -> Bugs:
        """``Bugs.only("scalar_bias")``: that one bug on, every other off (``None``: none)."""
        names = [f.name for f in fields(cls)]
        if name is not None and name not in names:
            raise ValueError(f"unknown bug {name!r}; choose one of {names}")
        return cls(**{n: n == name for n in names})

    @classmethod
    def every(cls, but: Sequence[str] = ()) -> Bugs:
        """All the bugs at once, as in the question this chapter answers (less ``but``)."""
        unknown = set(but) - set(cls.names())
        if unknown:
            raise ValueError(f"unknown bugs {sorted(unknown)}; choose from {cls.names()}")
        return cls(**{n: n not in but for n in cls.names()})

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


NO_BUGS = Bugs()

# --------------------------------------------------------------------------- one layer


def dense_relu_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``relu(x @ W + b)`` for x ``(..., B, n_in)``, W ``(..., n_in, n_out)``, b ``(..., n_out)``."""
    return np.maximum(x @ W + b[..., None, :], 0.0)


def dense_relu_backward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, grad_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of ``h = relu(x @ W + b)``: return ``(dx, dW, db)``.

    ``grad_out`` is dL/dh, shape ``(..., B, n_out)``. The chain rule, one step at a time:
    dL/dz = dL/dh * relu'(z); dW = x.T @ dL/dz (an outer product with the input, summed
    over the batch); db = dL/dz summed over the batch; dx = dL/dz @ W.T.
    """
    z = x @ W + b[..., None, :]  # (..., B, n_out) pre-activation
    delta = grad_out * (z > 0)  # dL/dz, a new array: z itself is left untouched
    dW = np.swapaxes(x, -1, -2) @ delta  # (..., n_in, B) @ (..., B, n_out) -> (..., n_in, n_out)
    db = delta.sum(axis=-2)  # (..., B, n_out) -> (..., n_out)
    dx = delta @ np.swapaxes(W, -1, -2)  # (..., B, n_out) @ (..., n_out, n_in) -> (..., B, n_in)
    return dx, dW, db


# --------------------------------------------------------------------------- loss


def huber(error: np.ndarray, delta: float = 1.0) -> np.ndarray:
    """Huber loss of ``error`` elementwise: quadratic inside ``|error| <= delta``, linear outside."""
    a = np.abs(error)
    return np.where(a <= delta, 0.5 * error**2, delta * (a - 0.5 * delta))


def huber_grad(error: np.ndarray, delta: float = 1.0) -> np.ndarray:
    """d huber / d error = ``clip(error, -delta, delta)``."""
    return np.clip(error, -delta, delta)


def huber_grad_with_jump(error: np.ndarray) -> np.ndarray:
    """A wrong Huber derivative (delta 1): ``error / 2`` inside, ``sign(error) / 4`` outside.

    The squared branch was scaled by 2/4 and the linear one by 1/4, so the gradient drops
    from 0.5 to 0.25 where ``|error|`` crosses 1: a larger error gets a smaller push.
    """
    return np.where(np.abs(error) <= 1.0, error / 2, np.sign(error) / 4)


# --------------------------------------------------------------------------- Adam


def adam_step(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    t: int,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Adam step (Kingma & Ba, as in ``torch.optim.Adam``): return ``(param, m, v)``.

    ``t`` is the number of this step, counting from 1. ``m`` and ``v`` are the running
    first and second moments of the *gradient*; the bias corrections undo their
    initialisation at zero.
    """
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    param = param - lr * m_hat / (np.sqrt(v_hat) + eps)
    return param, m, v


class Adam:
    """Adam on one flat parameter vector, updated in place (the MLP keeps views into it)."""

    def __init__(self, params: np.ndarray, lr: float = 1e-3, betas=(0.9, 0.999), eps=1e-8):
        if params.ndim != 1:
            raise ValueError(f"Adam expects the flat parameter vector, got shape {params.shape}")
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self._tmp = np.zeros_like(params)
        self.t = 0

    def step(self, grad: np.ndarray, part: slice = slice(None), new_step: bool = True) -> None:
        """:func:`adam_step`'s formulas, written in place (no temporary arrays) for speed.

        ``part`` steps only that slice of the vector; ``new_step=False`` keeps the step
        count, for the other parts of the same update.
        """
        beta1, beta2 = self.betas
        self.t += int(new_step)
        m, v, tmp, grad = self.m[part], self.v[part], self._tmp[part], grad[part]
        m *= beta1
        m += (1 - beta1) * grad  # m = beta1 m + (1 - beta1) g
        np.multiply(grad, grad, out=tmp)
        v *= beta2
        tmp *= 1 - beta2
        v += tmp  # v = beta2 v + (1 - beta2) g^2
        np.sqrt(v, out=tmp)
        tmp *= 1.0 / np.sqrt(1 - beta2**self.t)  # sqrt(v_hat)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= self.lr / (1 - beta1**self.t)  # lr m_hat / (sqrt(v_hat) + eps)
        self.params[part] -= tmp


# --------------------------------------------------------------------------- the network


class MLP:
    """ReLU hidden layers and a linear output, with an optional leading ensemble axis.

    ``MLP([4, 64, 64, 2], n_members=10)`` holds ten independent networks: ``W[l]`` has shape
    ``(10, n_in, n_out)`` and ``forward`` takes ``(10, B, 4)``. With ``n_members=None`` the
    shapes have no member axis. All parameters live in one flat vector ``self.flat`` (the
    ``W`` and ``b`` are views into it), and so do their gradients (``self.grad``), so Adam
    and the target-network copy are single numpy operations.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        n_members: int | None = None,
        rng: np.random.Generator | None = None,
        dtype=np.float64,
        bugs: Bugs = NO_BUGS,
    ):
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"sizes must list at least two positive layer widths, got {sizes}")
        self.sizes = [int(s) for s in sizes]
        self.lead = () if n_members is None else (int(n_members),)
        self.bugs = bugs
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng() if rng is None else rng
        b_shape = (1,) if bugs.scalar_bias else None
        shapes = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            shapes.append(self.lead + (n_in, n_out))
            shapes.append(self.lead + (b_shape or (n_out,)))
        total = sum(int(np.prod(s)) for s in shapes)
        self.flat = np.zeros(total, dtype=self.dtype)
        self.grad = np.zeros(total, dtype=self.dtype)
        self.params, self.grads = [], []
        self.layer_parts: list[slice] = []  # layer l's W and b: one slice of the flat vector
        offset = 0
        for i, shape in enumerate(shapes):
            n = int(np.prod(shape))
            self.params.append(self.flat[offset : offset + n].reshape(shape))
            self.grads.append(self.grad[offset : offset + n].reshape(shape))
            if i % 2 == 0:
                layer_start = offset
            else:
                self.layer_parts.append(slice(layer_start, offset + n))
            offset += n
        self.W, self.b = self.params[0::2], self.params[1::2]
        self.dW, self.db = self.grads[0::2], self.grads[1::2]
        self.init(rng)
        self._acts: list[np.ndarray] = []

    def init(self, rng: np.random.Generator) -> None:
        """He-uniform weights and zero biases (or the all-positive bug)."""
        for W, b in zip(self.W, self.b):
            n_in = W.shape[-2]
            bound = np.sqrt(6.0 / n_in)
            if self.bugs.all_positive_init:
                # U[0, 1) scaled: every weight positive, so every unit sees the same sum.
                W[...] = rng.random(W.shape) * np.sqrt(2.0 / n_in)
            else:
                W[...] = rng.uniform(-bound, bound, W.shape)
            b[...] = 0.0

    @property
    def n_layers(self) -> int:
        return len(self.W)

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        want = self.lead + ("B", self.sizes[0])
        if x.ndim != len(want) or x.shape[-1] != self.sizes[0] or x.shape[:-2] != self.lead:
            raise ValueError(f"input must have shape {want}, got {x.shape}")
        return x

    def forward(self, x: np.ndarray, keep: bool = True) -> np.ndarray:
        """Q-values ``(..., B, n_out)`` for inputs ``(..., B, n_in)``.

        ``keep=True`` stores every layer's input for :meth:`backward`.
        """
        h = self._check_input(x)
        acts = [h]
        for layer, (W, b) in enumerate(zip(self.W, self.b)):
            bias = b[..., None, :]  # (..., n_out) -> (..., 1, n_out); (..., 1) if scalar
            z = h @ W + bias  # (..., B, n_in) @ (..., n_in, n_out) -> (..., B, n_out)
            h = np.maximum(z, 0.0, out=z) if layer < self.n_layers - 1 else z
            acts.append(h)
        if keep:
            self._acts = acts
        return h

    def backward(self, grad_out: np.ndarray, optimizer: Adam | None = None) -> np.ndarray:
        """Fill ``self.grad`` with dL/dparams, given dL/d(output); return dL/d(input).

        From the top layer down: the layer's error ``delta_l`` gives its gradients,
        ``dW_l = input_l.T @ delta_l`` and ``db_l = sum over the batch of delta_l``, and the
        error of the layer below, ``delta_{l-1} = (delta_l @ W_l.T) * relu'(z_{l-1})``.
        ``optimizer`` is only for ``bugs.stale_weights_backprop``, which steps each layer
        before the error goes down through its weights.
        """
        if not self._acts:
            raise RuntimeError("call forward(x) before backward(grad_out)")
        acts, bugs = self._acts, self.bugs
        delta = np.asarray(grad_out, dtype=self.dtype)
        if delta.shape != acts[-1].shape:
            raise ValueError(f"grad_out must have shape {acts[-1].shape}, got {delta.shape}")
        if bugs.stale_weights_backprop and optimizer is None:
            raise ValueError("the stale_weights_backprop bug needs backward(..., optimizer)")
        for layer in range(self.n_layers - 1, -1, -1):
            x = acts[layer]  # (..., B, n_in): this layer's input, the ReLU output below
            if bugs.no_input_outer_product:
                # the error, summed over the batch, copied to every input row
                self.dW[layer][...] = delta.sum(axis=-2)[..., None, :]
            else:
                np.matmul(np.swapaxes(x, -1, -2), delta, out=self.dW[layer])
            if bugs.scalar_bias:
                self.db[layer][...] = delta.sum(axis=(-2, -1))[..., None]
            else:
                self.db[layer][...] = delta.sum(axis=-2)
            if bugs.stale_weights_backprop:  # update now: the error below sees the new W
                top = layer == self.n_layers - 1
                optimizer.step(self.grad, part=self.layer_parts[layer], new_step=top)
            upstream = delta @ np.swapaxes(
                self.W[layer], -1, -2
            )  # (..., B, n_out) -> (..., B, n_in)
            if layer > 0:
                # relu'(z) from the stored output x = relu(z); with the bug, a test for
                # z < 0 on the clamped copy finds nothing: the derivative is 1 everywhere
                delta = upstream if bugs.relu_derivative_always_one else upstream * (x > 0)
        return upstream

    def copy_from(self, other: MLP) -> None:
        """Make this network's parameters equal to ``other``'s (the target-network copy)."""
        if other.flat.shape != self.flat.shape:
            raise ValueError("the two networks have different architectures")
        self.flat[...] = other.flat

    def clone(self) -> MLP:
        twin = MLP(
            self.sizes,
            n_members=self.lead[0] if self.lead else None,
            dtype=self.dtype,
            bugs=self.bugs,
            rng=np.random.default_rng(0),
        )
        twin.copy_from(self)
        return twin
