"""Recurrent networks with an explicit hidden state, as chapter 5 teaches them.

The rules this module encodes:

* the state is an argument and a return value, never an attribute hidden in the module
  (``forward(obs, state) -> (outputs, state)``);
* the state is reset where a new episode starts (:func:`reset_state`), *before* the step
  that reads the episode's first observation;
* the policy or Q head reads the RNN's ``output`` (the last layer's h at every step), not
  ``h_n`` (every layer's h at the last step only);
* between truncated-BPTT segments the state is carried but detached (:func:`detach_state`);
* padded sequences are masked (:func:`sequence_mask`, :func:`masked_mean`) or packed
  (:func:`packed_forward`).

A state is ``None`` (zeros), a tensor (L, B, H) for a GRU, or a tuple (h, c) of two such
tensors for an LSTM. The per-step cells (``nn.GRUCell``) use (B, H).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None

__all__ = [
    "State",
    "RecurrentNet",
    "zero_state",
    "reset_state",
    "detach_state",
    "store_state",
    "state_of_envs",
    "check_state",
    "rollout_with_resets",
    "sequence_mask",
    "masked_mean",
    "masked_sequence_loss",
    "pad_episodes",
    "packed_forward",
    "last_valid",
]


def zero_state(rnn: nn.RNNBase, batch_size: int) -> State:
    """All-zero state of an ``nn.GRU`` / ``nn.LSTM``: (L, B, H), or (h, c) for an LSTM."""
    param = next(rnn.parameters())
    layers = rnn.num_layers * (2 if rnn.bidirectional else 1)
    h = torch.zeros(layers, batch_size, rnn.hidden_size, dtype=param.dtype, device=param.device)
    return (h, h.clone()) if isinstance(rnn, nn.LSTM) else h


def _keep_mask(
    episode_start: torch.Tensor | Sequence[bool] | bool, h: torch.Tensor
) -> torch.Tensor:
    start = torch.as_tensor(episode_start, device=h.device)
    batch = h.shape[-2]
    if start.ndim == 0:
        start = start.expand(batch)
    start = start.reshape(-1)
    if start.shape[0] != batch:
        raise ValueError(
            f"episode_start has {start.shape[0]} entries but the state has batch size {batch} "
            f"(state shape {tuple(h.shape)}): one flag per environment is needed"
        )
    return (1.0 - start.to(h.dtype)).unsqueeze(-1)  # (B, 1): broadcasts over H (and L)


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        items = ", ".join(_describe(v) for v in value[:3]) + (", ..." if len(value) > 3 else "")
        return f"a {type(value).__name__} of {len(value)} items ({items})"
    return f"a {type(value).__name__}"


def check_state(state: State) -> State:
    """Return ``state`` unchanged if it is a recurrent state, else raise naming the problem.

    A state is ``None`` (zeros), a GRU's h, (L, B, H) or (B, H), or an LSTM's tuple (h, c)
    of two tensors of the same shape.
    """
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        if state.ndim not in (2, 3):
            raise ValueError(
                f"a GRU state h is (L, B, H) or (B, H); got shape {tuple(state.shape)}"
            )
        return state
    pair = isinstance(state, (tuple, list)) and len(state) == 2
    if pair and all(isinstance(part, torch.Tensor) for part in state):
        if isinstance(state, list):
            raise TypeError(
                f"an LSTM state is a tuple (h, c), not a list; got {_describe(state)}: "
                "pass tuple(state)"
            )
        h, c = state
        if h.shape != c.shape or h.ndim not in (2, 3):
            raise ValueError(
                "an LSTM state (h, c) holds two tensors of the same shape, (L, B, H) or "
                f"(B, H); got h {tuple(h.shape)} and c {tuple(c.shape)}"
            )
        return state
    hint = ""
    if pair and isinstance(state[0], torch.Tensor) and isinstance(state[1], tuple):
        hint = (
            ": this looks like the whole return value of nn.LSTM, (output, (h, c)); "
            "the state is its second item"
        )
    raise TypeError(
        "a recurrent state is None, a GRU's h (a tensor (L, B, H) or (B, H)) or an LSTM's "
        f"tuple (h, c) of two such tensors; got {_describe(state)}{hint}"
    )


def _each_part(state: State, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
    """Apply ``fn`` to h (GRU), or to both h and c (LSTM): one rule for both kinds."""
    state = check_state(state)
    if state is None:
        return None
    if isinstance(state, tuple):
        return (fn(state[0]), fn(state[1]))
    return fn(state)


def reset_state(state: State, episode_start) -> State:
    """Zero the state of every environment whose ``episode_start`` flag is set.

    ``state`` is (L, B, H), (B, H), or an LSTM tuple (h, c) of them (both are zeroed);
    ``episode_start`` is (B,) (bool or 0/1) or a single bool. Multiplying by (1 - start)
    keeps the graph intact for the environments that go on. ``None`` stays ``None``.
    """
    return _each_part(state, lambda part: part * _keep_mask(episode_start, part))


def detach_state(state: State) -> State:
    """Cut the graph between truncated-BPTT segments; the values are carried on.

    For an LSTM both h and c are detached: c alone still reaches back through every step.
    """
    return _each_part(state, torch.Tensor.detach)


def store_state(state: State) -> State:
    """A copy of the state to keep in a rollout or replay buffer.

    Detached (the buffer must not hold the graph) and cloned (later in-place changes to
    the live state do not reach the stored one); for an LSTM both h and c.
    """
    return _each_part(state, lambda part: part.detach().clone())


def state_of_envs(state: State, envs) -> State:
    """The state of some environments only (a minibatch of sequences): batch dim -2.

    ``envs`` indexes the batch (a list of indices, a tensor, a slice or a bool mask);
    an (L, B, H) state becomes (L, len(envs), H), and both parts of an LSTM's (h, c).
    """
    return _each_part(state, lambda part: part[..., envs, :])


class RecurrentNet(nn.Module):
    """obs -> GRU/LSTM -> linear head, with the state passed in and returned.

    ``forward(obs (B, T, D), state, episode_start (B, T) or None) -> (out (B, T, K), state)``.
    With ``episode_start`` the state is reset *before* every step that starts an episode,
    also in the middle of a sequence (the training unroll of a rollout with several
    episodes per environment). ``step(obs (B, D), state, episode_start (B,))`` acts one step.
    The same module serves as a Q-network (K = actions) or a policy (K = logits).
    """

    def __init__(
        self,
        obs_dim: int,
        n_outputs: int,
        hidden_size: int = 32,
        *,
        cell: str = "gru",
        num_layers: int = 1,
    ):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f'cell must be "gru" or "lstm", got {cell!r}')
        rnn_class = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_class(obs_dim, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, n_outputs)
        self.obs_dim = obs_dim

    def initial_state(self, batch_size: int) -> State:
        return zero_state(self.rnn, batch_size)

    def forward(
        self, obs: torch.Tensor, state: State = None, episode_start: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        if obs.ndim != 3 or obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"obs must be (B, T, {self.obs_dim}) (batch_first), got {tuple(obs.shape)}; "
                "for a single step use .step(obs (B, D), state)"
            )
        batch, steps = obs.shape[:2]
        if state is None:
            state = self.initial_state(batch)
        is_lstm = isinstance(self.rnn, nn.LSTM)
        if isinstance(check_state(state), tuple) != is_lstm:
            raise TypeError(
                f"this network is {'an LSTM' if is_lstm else 'a GRU'}: its state is "
                f"{'a tuple (h, c)' if is_lstm else 'one tensor h'}; got {_describe(state)}"
            )
        if episode_start is None or not bool(torch.as_tensor(episode_start)[:, 1:].any()):
            # Resets at most before the first step: one call to the fused RNN.
            if episode_start is not None:
                state = reset_state(state, torch.as_tensor(episode_start)[:, 0])
            output, state = self.rnn(obs, state)  # output: (B, T, H), the last layer at every t
        else:
            starts = torch.as_tensor(episode_start)
            if starts.shape != (batch, steps):
                raise ValueError(
                    f"episode_start must be (B, T) = ({batch}, {steps}), got {tuple(starts.shape)}"
                )
            outputs = []
            for t in range(steps):  # reset before the step that reads the new episode's obs
                state = reset_state(state, starts[:, t])
                out_t, state = self.rnn(obs[:, t : t + 1], state)  # (B, 1, H)
                outputs.append(out_t)
            output = torch.cat(outputs, dim=1)  # T x (B, 1, H) -> (B, T, H)
        return self.head(output), state

    def step(
        self, obs: torch.Tensor, state: State = None, episode_start=None
    ) -> tuple[torch.Tensor, State]:
        """One acting step: obs (B, D) -> (out (B, K), state)."""
        if obs.ndim == 1:
            obs = obs.unsqueeze(0)  # (D,) -> (1, D)
        if state is None:
            state = self.initial_state(obs.shape[0])
        if episode_start is not None:
            state = reset_state(state, episode_start)
        out, state = self.forward(obs.unsqueeze(1), state)  # (B, D) -> (B, 1, D)
        return out.squeeze(1), state  # (B, 1, K) -> (B, K)


def rollout_with_resets(
    cell: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    episode_starts: torch.Tensor,
    h0: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a cell step by step over a time-major batch, resetting at episode starts.

    ``cell(x (B, D), h (B, H)) -> h (B, H)`` (an ``nn.GRUCell``), ``inputs`` (T, B, D),
    ``episode_starts`` (T, B): True where step t is the first step of a new episode in
    environment b, ``h0`` (B, H). Returns (outputs (T, B, H), h_T (B, H)).
    """
    h = h0
    outputs = []
    for t in range(inputs.shape[0]):
        h = reset_state(h, episode_starts[t])  # before the step: the new episode starts at 0
        h = cell(inputs[t], h)
        outputs.append(h)
    return torch.stack(outputs), h  # T x (B, H) -> (T, B, H)


def sequence_mask(
    lengths: torch.Tensor | Sequence[int], max_len: int | None = None
) -> torch.Tensor:
    """(B, T) bool mask, True on the first ``lengths[b]`` steps (padding at the end)."""
    lengths = torch.as_tensor(lengths)
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(
    values: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...] | None = None,
    keepdim: bool = False,
) -> torch.Tensor:  # fmt: skip
    """Mean over the entries where ``mask`` is True; padding counts neither up nor down.

    ``dim``: the axes to average over (all of them by default), for one mean per row.
    """
    if values.shape != mask.shape:
        raise ValueError(f"values {tuple(values.shape)} and mask {tuple(mask.shape)} differ")
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    total = (values * mask).sum(dim, keepdim=keepdim)
    return total / mask.sum(dim, keepdim=keepdim).clamp(min=1.0)


def masked_sequence_loss(
    outputs: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Mean squared error over the valid steps of end-padded sequences (B, T)."""
    mask = sequence_mask(lengths, outputs.shape[1])  # (B, T)
    return masked_mean((outputs - targets) ** 2, mask)


def pad_episodes(episodes: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, D) episodes -> (padded (B, T_max, D) with zeros at the end, lengths (B,))."""
    lengths = torch.tensor([len(e) for e in episodes])
    return pad_sequence(list(episodes), batch_first=True), lengths


def packed_forward(
    rnn: nn.RNNBase, padded: torch.Tensor, lengths: torch.Tensor, state: State = None
) -> tuple[torch.Tensor, State]:
    """Run a batch_first RNN over end-padded sequences with ``pack_padded_sequence``.

    Returns outputs (B, T, H) with zeros on padding, and the state at each sequence's own
    last valid step (not at the padded end).
    """
    check_state(state)
    packed = pack_padded_sequence(padded, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out_packed, state = rnn(packed, state)
    outputs, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=padded.shape[1])
    return outputs, state


def last_valid(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """outputs (B, T, H) -> (B, H): each sequence's output at its last valid step."""
    index = (torch.as_tensor(lengths, device=outputs.device) - 1).clamp(min=0)  # (B,)
    return outputs[torch.arange(outputs.shape[0], device=outputs.device), index]
