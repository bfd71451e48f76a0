"""Many seeds at once: the one way this book trains S independent agents together.

An agent is written for one seed: one network, one loss. To train ten seeds in about the
time of two, :class:`SeedBatch` stacks S copies of that plain network (one per seed, each
initialised by its own seed) and calls the plain ``forward`` (or any other method) under
``torch.func.vmap``: copy k reads slice k of every input and writes slice k of every output.
Nothing of the agent is written a second time.

The stacked weights are ordinary parameters of shape (S, ...). One ``torch.optim.Adam`` over
them is S independent Adams (Adam works element by element); gradient clipping is the one
step that mixes elements, so it has its own per-seed version, :func:`clip_grad_norm_per_seed`.

>>> import torch
>>> from torch import nn
>>> nets = [nn.Linear(4, 2) for seed in range(3)]
>>> batch = SeedBatch(nets)
>>> batch(torch.zeros(3, 5, 4)).shape       # (S, B, 4) -> (S, B, 2)
torch.Size([3, 5, 2])
>>> batch.seed(1).weight.shape              # seed 1's plain network, for diagnostics
torch.Size([2, 4])

**Without vmap.** A method whose code reads shapes from the right and calls its layers
(``nn.Linear``, an ``nn.Sequential`` of them, the cells of :mod:`rldebug.cells`) can run once
for all seeds on the stacked weights, with no per-call cost of vmap: a module lists such
methods in ``seed_first_methods``, and :meth:`SeedBatch.stacked_module` is the plain module
with every weight (S, ...) and every layer taking seed-first inputs. The DQN's feed-forward
network and the PPO agent's acting and loss run this way; everything else goes through vmap.

What the plain module must do to be batched: no ``.item()``, ``.tolist()`` or Python
``if`` on tensor *values* (shapes are fine), no in-place writes into its inputs, and no
random sampling inside the call (sample from its outputs, outside). ``nn.GRU``/``nn.LSTM``
have no batching rule; the recurrent agents use :mod:`rldebug.cells` instead.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import stack_module_state, vmap
from torch.nn.utils.stateless import _reparametrize_module  # what functional_call uses
from torch.utils._pytree import tree_map

__all__ = [
    "SeedBatch",
    "linear",
    "clip_grad_norm_per_seed",
    "freeze_adam_seed",
    "grad_norm_per_seed",
    "per_seed",
    "seeded",
]


def seeded(make: Callable[[], nn.Module], seeds: Iterable[int]) -> list[nn.Module]:
    """One plain network per seed, each built right after ``torch.manual_seed(seed)``.

    The network of seed k is the one the plain agent builds alone on seed k.
    """
    nets = []
    for seed in seeds:
        torch.manual_seed(int(seed))
        nets.append(make())
    return nets


def _in_dim(value: Any) -> int | None:
    """0 for tensors (and tuples of tensors, an LSTM's (h, c), nested: a batch holding an
    LSTM's state); None for everything else."""
    if isinstance(value, torch.Tensor):
        return 0
    if isinstance(value, tuple) and value and all(_in_dim(v) == 0 for v in value):
        return 0  # an LSTM's (h, c), or a named tuple of tensors (a batch)
    return None


def per_seed(fn: Callable) -> Callable:
    """Lift a function written for one seed to S seeds at once.

    ``fn`` takes plain networks and plain tensors, for instance
    ``dqn_loss(q_net, target_net, batch, gamma)``. ``per_seed(fn)`` takes :class:`SeedBatch`
    networks in their place and tensors (or named tuples and tuples of tensors) with a
    leading seed axis; seed k's call sees seed k's network and slice k of every tensor.
    Other arguments (numbers, flags, None) are shared. Outputs gain the seed axis first.
    """

    @functools.wraps(fn)
    def lifted(*args, **kwargs):
        keys = list(kwargs)
        values = list(args) + [kwargs[k] for k in keys]
        batches = [v for v in values if isinstance(v, SeedBatch)]
        if not batches:
            raise TypeError(f"per_seed({fn.__name__}) needs at least one SeedBatch argument")
        n = batches[0].num_seeds
        batches[0]._check_seed_axis(values, fn.__name__)

        def one_seed(*vals):
            with contextlib.ExitStack() as stack:
                plain = []
                for original, val in zip(values, vals):
                    if isinstance(original, SeedBatch):
                        stack.enter_context(_reparametrize_module(original.plain, val))
                        plain.append(original.plain)
                    else:
                        plain.append(val)
                pos, named = plain[: len(args)], dict(zip(keys, plain[len(args) :]))
                return fn(*pos, **named)

        call_values = [v.stacked() if isinstance(v, SeedBatch) else v for v in values]
        in_dims = tuple(0 if isinstance(v, SeedBatch) else _in_dim(v) for v in values)
        if n == 1:  # one seed: the same call on slice 0, without vmap's per-call overhead
            sliced = [_slice0(v) if d == 0 else v for v, d in zip(call_values, in_dims)]
            return tree_map(_add_seed_axis, one_seed(*sliced))
        return vmap(one_seed, in_dims=in_dims)(*call_values)

    return lifted


def _slice0(value: Any) -> Any:
    """Seed 0's slice of a tensor, of (nested) tuples of tensors (each kept as its own type)
    or of a dict of stacked parameters."""
    if isinstance(value, torch.Tensor):
        return value[0]
    if isinstance(value, dict):
        return {k: v[0] for k, v in value.items()}
    parts = [_slice0(v) for v in value]
    return type(value)(*parts) if hasattr(value, "_fields") else type(value)(parts)


def _add_seed_axis(value: Any) -> Any:
    return value.unsqueeze(0) if isinstance(value, torch.Tensor) else value


def _lead(value: Any) -> int | None:
    """The leading size of a tensor (or of a tuple of tensors), else None."""
    if _in_dim(value) != 0:
        return None
    return value.shape[0] if isinstance(value, torch.Tensor) else _lead(value[0])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` for one seed's weight (out, in), or for S seeds' (S, out, in) at once.

    With a seed axis, ``x`` is (S, ..., in) and seed k's rows meet seed k's weight: one
    batched matrix product, (S, N, in) @ (S, in, out), instead of S products.
    """
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    s, lead = weight.shape[0], x.shape[1:-1]
    flat = x.reshape(s, -1, x.shape[-1])  # (S, *lead, in) -> (S, N, in)
    if bias is None:
        y = torch.bmm(flat, weight.transpose(1, 2))
    else:  # bias (S, out) -> (S, 1, out); weight (S, out, in) -> (S, in, out)
        y = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
    return y.reshape(s, *lead, y.shape[-1])  # (S, N, out) -> (S, *lead, out)


class _SeedFirst:
    """A plain module seen with every parameter and buffer stacked (S, ...).

    Attribute access mirrors the module: a weight gives its stacked tensor, a submodule gives
    its own seed-first view, a method is bound to the view (so ``self.core(x, h)`` inside it
    reaches the view of ``core``), anything else (sizes, flags) is the plain module's. Calling
    a view runs the layer on seed-first inputs: linear layers through :func:`linear`,
    ``nn.Sequential`` layer by layer, activations element by element, and any other module's
    own ``forward`` with the view as ``self``.
    """

    def __init__(self, module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str = ""):
        self._module, self._tensors, self._prefix = module, tensors, prefix

    def __getattr__(self, name: str):
        key = self._prefix + name
        if key in self._tensors:
            return self._tensors[key]
        child = self._module._modules.get(name)
        if child is not None:
            return _SeedFirst(child, self._tensors, key + ".")
        attribute = getattr(type(self._module), name, None)
        if callable(attribute) and not isinstance(attribute, type):
            return attribute.__get__(self)  # a method of the plain class, run on the view
        return getattr(self._module, name)

    def __iter__(self):
        return (getattr(self, name) for name in self._module._modules)

    def __getitem__(self, index: int):
        return list(self)[index]

    def __call__(self, *args, **kwargs):
        module = self._module
        if isinstance(module, nn.Linear):
            return linear(args[0], self.weight, self.bias)
        if isinstance(module, nn.Sequential):
            x = args[0]
            for layer in self:
                x = layer(x)
            return x
        if isinstance(module, nn.Flatten):  # its dims count from the plain input's
            end = module.end_dim if module.end_dim < 0 else module.end_dim + 1
            return args[0].flatten(module.start_dim + 1, end)
        if isinstance(module, _ACTIVATIONS):  # element by element: any leading axes
            return module(*args, **kwargs)
        return type(module).forward(self, *args, **kwargs)


_ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.GELU, nn.LeakyReLU, nn.SiLU, nn.Identity)


class SeedBatch(nn.Module):
    """S plain modules with independent weights, called as one with a leading seed axis.

    ``batch(x)`` runs ``modules[k](x[k])`` for every k at once; ``batch.call("step", obs, h)``
    does the same for any other method. Tensor arguments (and tuples of tensors) carry the
    seed axis first; other arguments (None, numbers, flags) are shared by all seeds.
    """

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__()
        modules = list(modules)
        if not modules:
            raise ValueError("SeedBatch needs at least one module (one per seed)")
        kinds = {type(m) for m in modules}
        if len(kinds) > 1:
            raise TypeError(
                f"every seed needs the same network; got {sorted(k.__name__ for k in kinds)}"
            )
        params, buffers = stack_module_state(modules)  # name -> (S, ...)
        self.num_seeds = len(modules)
        # The template holds the structure and the plain methods, not the weights.
        self._template = [copy.deepcopy(modules[0]).to("meta")]  # a list: not a submodule
        # A feed-forward stack of linear layers and activations runs layer by layer.
        self._layer_by_layer = isinstance(modules[0], nn.Sequential) and all(
            isinstance(m, (nn.Linear, nn.Flatten, *_ACTIVATIONS)) for m in modules[0]
        )
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        self._selected: torch.Tensor | None = None  # see select()
        for name, value in params.items():
            self.register_parameter(_flat(name), nn.Parameter(value.detach().clone()))
        for name, value in buffers.items():
            self.register_buffer(_flat(name), value.detach().clone())

    @property
    def plain(self) -> nn.Module:
        """The plain module's structure (weights on the meta device: read-only)."""
        return self._template[0]

    def stacked(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers by their plain names, each with the seed axis first."""
        names = self._param_names + self._buffer_names
        tensors = {n: getattr(self, _flat(n)) for n in names}
        if self._selected is not None:  # a selection's seeds only, read at every call
            tensors = {n: t[self._selected] for n, t in tensors.items()}
        return tensors

    def select(self, seeds: Sequence[int] | np.ndarray | torch.Tensor) -> SeedBatch:
        """Some of the seeds (positions along the seed axis) as a batch of their own.

        The selection shares this batch's weights and reads them at every call, so it
        always sees the latest ones; its calls take inputs (len(seeds), ...), and a
        backward pass through it leaves zeros in the gradient slices of the other seeds.
        Training uses it to leave the seeds that stopped learning out of the computation.
        """
        index = torch.as_tensor(np.asarray(seeds), dtype=torch.long).reshape(-1)
        if index.numel() and not (0 <= int(index.min()) and int(index.max()) < self.num_seeds):
            raise IndexError(
                f"seed positions {index.tolist()} out of range for {self.num_seeds} seeds"
            )
        if self._selected is not None:
            raise ValueError("select from the full SeedBatch, not from a selection")
        view = copy.copy(self)  # shares the parameter dict: the same tensors, not copies
        view.__dict__["_selected"] = index
        view.__dict__["num_seeds"] = int(index.numel())
        return view

    def stacked_module(self) -> _SeedFirst:
        """The plain module with every weight stacked (S, ...) and every layer taking
        seed-first inputs: a method written for any leading axes runs all seeds at once.

        For methods listed in the module's ``seed_first_methods`` (see the module docstring)
        and for a feed-forward ``nn.Sequential``; it reads the latest weights at each call.
        """
        return _SeedFirst(self.plain, self.stacked())

    def _check_seed_axis(self, values: Sequence[Any], what: str) -> None:
        for value in values:
            lead = _lead(value)
            if lead is not None and lead != self.num_seeds:
                raise ValueError(
                    f"{what} over {self.num_seeds} seeds: every tensor needs the seed axis "
                    f"first, (S={self.num_seeds}, ...); got one with a leading size of {lead}"
                )

    def call(self, method: str, *args, **kwargs):
        """``method`` of every seed's network on its own slice of the inputs."""
        if method in getattr(self.plain, "seed_first_methods", ()):
            self._check_seed_axis([*args, *kwargs.values()], method)
            return getattr(self.stacked_module(), method)(*args, **kwargs)

        def method_of_one_seed(net, *a, **k):
            return getattr(net, method)(*a, **k)

        method_of_one_seed.__name__ = method
        return per_seed(method_of_one_seed)(self, *args, **kwargs)

    def forward(self, *args, **kwargs):
        if self._layer_by_layer and len(args) == 1 and not kwargs:
            x = args[0]
            if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] != self.num_seeds:
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(
                    f"inputs of a SeedBatch of {self.num_seeds} seeds need the seed axis first, "
                    f"(S={self.num_seeds}, ...); got {got}"
                )
            # Layer by layer on the stacked weights: the same arithmetic as the vmapped call,
            # without its fixed cost per call (about 0.1 ms, which dominates one acting step).
            return self.stacked_module()(x)
        return self.call("forward", *args, **kwargs)

    def seed(self, k: int) -> nn.Module:
        """A plain module holding seed k's current weights (a copy: for diagnostics)."""
        if not -self.num_seeds <= k < self.num_seeds:
            raise IndexError(f"seed index {k} out of range for {self.num_seeds} seeds")
        if self._selected is not None:
            raise ValueError("seed(k) reads the full SeedBatch, not a selection")
        single = copy.deepcopy(self.plain).to_empty(
            device=next(iter(self.stacked().values())).device
        )
        state = {n: getattr(self, _flat(n))[k].detach().clone() for n in self._param_names}
        state.update({n: getattr(self, _flat(n))[k].clone() for n in self._buffer_names})
        single.load_state_dict(state)
        return single

    def load_seed(self, k: int, module: nn.Module) -> None:
        """Overwrite seed k's weights with ``module``'s (a plain network of the same shape)."""
        if self._selected is not None:
            raise ValueError("load_seed writes into the full SeedBatch, not a selection")
        state = module.state_dict()
        with torch.no_grad():
            for n in self._param_names + self._buffer_names:
                getattr(self, _flat(n))[k].copy_(state[n])

    def extra_repr(self) -> str:
        return f"num_seeds={self.num_seeds}, plain={type(self.plain).__name__}"


def _flat(name: str) -> str:
    return name.replace(".", "__")


def grad_norm_per_seed(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """(S,) L2 norm of each seed's gradient over every stacked parameter (S, ...)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        raise ValueError("no gradients: call backward() first")
    squares = [g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads]  # each (S,)
    return torch.stack(squares).sum(0).sqrt()


def clip_grad_norm_per_seed(params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``nn.utils.clip_grad_norm_`` for every seed on its own; returns the (S,) norms before.

    Clipping the stacked gradient as one vector would couple the seeds (one large gradient
    would shrink every seed's step), so each seed's slice is scaled by its own norm.
    """
    params = [p for p in params if p.grad is not None]
    norms = grad_norm_per_seed(params)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # (S,), the same formula as torch's
    grads = [p.grad for p in params]
    torch._foreach_mul_(
        grads, [scale.view(-1, *([1] * (g.dim() - 1))) for g in grads]
    )  # (S, 1, ...)
    return norms


def freeze_adam_seed(optimizer: torch.optim.Optimizer, k: int) -> None:
    """Stop seed k's slice of every stacked parameter from moving under ``torch.optim.Adam``.

    Zeroes seed k's first and second moments; with a zero gradient from then on (leave its
    loss out of the sum that is backpropagated), Adam's step for that slice is exactly 0,
    where momentum alone would otherwise keep moving it. The other seeds are untouched.
    """
    for group in optimizer.param_groups:
        if group.get("weight_decay", 0):
            raise ValueError("freeze_adam_seed: weight decay would still move the frozen seed")
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                if key in state:
                    state[key][k].zero_()
