"""GRU and LSTM cells written out, and one unroll with episode resets for both.

``GRUCell`` and ``LSTMCell`` compute exactly what ``nn.GRUCell`` and ``nn.LSTMCell`` compute,
with the same parameter names and the same initialisation (their state dicts load into each
other). They exist for one reason: ``torch.func.vmap`` has no fast rule for PyTorch's fused
cells, and these are plain linear arithmetic, so :class:`rldebug.seedbatch.SeedBatch`
can train many seeds of an agent that uses them (under vmap, or on its stacked weights
directly: :func:`rldebug.seedbatch.linear` takes either).

A cell's state is a tensor h (B, H) for a GRU and a tuple (h, c) for an LSTM; every
function here treats both the same way (see :mod:`rldebug.recurrent` for the rules).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rldebug.recurrent import State
from rldebug.seedbatch import linear  # F.linear, or S seeds' stacked weights at once

__all__ = ["GRUCell", "LSTMCell", "make_cell", "cell_output", "unroll"]


class _Cell(nn.Module):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"sizes must be >= 1, got {input_size} and {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        g = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))  # (gates * H, D)
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size))  # (gates * H, H)
        self.bias_ih = nn.Parameter(torch.empty(g))
        self.bias_hh = nn.Parameter(torch.empty(g))
        bound = 1.0 / math.sqrt(hidden_size)  # PyTorch's RNN initialisation, in its order
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        """The input's part of the gates, W_i x + b_i: (..., D) -> (..., gates * H).

        It does not depend on the state, so :func:`unroll` computes it for every step at
        once, and only the recurrent part is left inside the time loop.
        """
        return linear(x, self.weight_ih, self.bias_ih)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class GRUCell(_Cell):
    """``nn.GRUCell`` as arithmetic: x (B, D), h (B, H) -> h' (B, H).

    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 - z) ⊙ n + z ⊙ h.
    """

    gates = 3

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.weight_ih.new_zeros(batch_size, self.hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.step_from_input_gates(self.input_gates(x), h)

    def step_from_input_gates(self, gi: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The step after the input's part of the gates, ``gi = input_gates(x)`` (B, 3H)."""
        size = self.hidden_size
        gi_rz, gi_n = gi.split((2 * size, size), -1)  # (B, 2H), (B, H)
        gh_rz, gh_n = linear(h, self.weight_hh, self.bias_hh).split((2 * size, size), -1)
        r, z = torch.sigmoid(gi_rz + gh_rz).chunk(2, -1)  # reset and update gates
        n = torch.tanh(gi_n + r * gh_n)  # candidate
        return n + z * (h - n)  # = (1 - z) * n + z * h


class LSTMCell(_Cell):
    """``nn.LSTMCell`` as arithmetic: x (B, D), (h, c) -> (h', c'), each (B, H).

    i, f, g, o = σ, σ, tanh, σ of (W_i x + b_i + W_h h + b_h) split in four;
    c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').
    """

    gates = 4

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.weight_ih.new_zeros(batch_size, self.hidden_size)
        return h, h.clone()

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.step_from_input_gates(self.input_gates(x), state)

    def step_from_input_gates(
        self, gi: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step after the input's part of the gates, ``gi = input_gates(x)`` (B, 4H)."""
        h, c = state
        gates = gi + linear(h, self.weight_hh, self.bias_hh)
        i, f, g, o = gates.chunk(4, -1)  # (B, 4H) -> 4 x (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


def make_cell(cell: str, input_size: int, hidden_size: int) -> GRUCell | LSTMCell:
    """``cell="gru"`` or ``"lstm"``: the one switch every recurrent agent takes."""
    if cell == "gru":
        return GRUCell(input_size, hidden_size)
    if cell == "lstm":
        return LSTMCell(input_size, hidden_size)
    raise ValueError(f'cell must be "gru" or "lstm", got {cell!r}')


def cell_output(state: State) -> torch.Tensor:
    """What the head reads: h for a GRU, the h of (h, c) for an LSTM (never c)."""
    return state[0] if isinstance(state, tuple) else state


def _keep(state: State, keep: torch.Tensor) -> State:
    if isinstance(state, tuple):
        return tuple(part * keep for part in state)
    return state * keep


def unroll(
    cell: GRUCell | LSTMCell,
    inputs: torch.Tensor,
    state: State,
    episode_start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, State]:
    """Run ``cell`` over a time-major sequence, zeroing the state where an episode starts.

    Args:
        inputs: (T, B, D).
        state: the state before ``inputs[0]``: h (B, H), or (h, c) for an LSTM.
        episode_start: (T, B), 1 where ``inputs[t]`` is an episode's first observation; the
            state (h and c alike) is zeroed *before* that step. None: no resets.

    Returns:
        outputs (T, B, H), the h after every step, and the state after the last step.
    """
    if inputs.dim() != 3:
        raise ValueError(f"inputs must be time-major (T, B, D), got {tuple(inputs.shape)}")
    if episode_start is not None and episode_start.shape != inputs.shape[:2]:
        raise ValueError(
            f"episode_start must be (T, B) = {tuple(inputs.shape[:2])}, "
            f"got {tuple(episode_start.shape)}"
        )
    keep = None
    if episode_start is not None:
        keep = 1.0 - episode_start.to(inputs.dtype).unsqueeze(-1)  # (T, B) -> (T, B, 1)
    if isinstance(cell, _Cell):
        # The input part of the gates of every step in one matmul; unbind, not gates[t] in
        # the loop (indexing would build a zero (T, B, G) gradient per step in backward).
        steps = cell.input_gates(inputs).unbind(0)  # (T, B, D) -> T x (B, gates * H)
        step = cell.step_from_input_gates
    else:  # any other cell(x, state), PyTorch's nn.GRUCell for instance
        steps, step = inputs.unbind(0), cell
    outputs = []
    for t in range(inputs.shape[0]):
        if keep is not None:
            state = _keep(state, keep[t])  # multiply, not assign: vmap-safe, graph intact
        state = step(steps[t], state)
        outputs.append(cell_output(state))
    return torch.stack(outputs), state  # T x (B, H) -> (T, B, H)
