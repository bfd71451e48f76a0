"""The book's diagnostics on stable-baselines3 and sb3-contrib models.

Install with ``pip install "rldebug[sb3]"``. Nothing here is imported by ``import rldebug``.

* :class:`DQNDashboard`: a callback that records (and, in Jupyter, draws) the DQN
  dashboard of :mod:`rldebug.dashboard` while ``model.learn`` runs;
* :class:`FirstEpochCheck`: a callback for ``PPO`` and ``RecurrentPPO`` that recomputes,
  before every update, the rollout's log-probs the way the training pass does, and
  reports where ratio = 1 fails as (env, step);
* :class:`DQNHooks`, :class:`RecurrentPolicyHooks`, :class:`OnPolicyHooks`: what
  :func:`rldebug.diagnose` needs to drive a model (:func:`hooks_for` picks one). The
  recurrent hooks keep the LSTM state of one environment and reset it through
  ``episode_starts``, as the model does when it acts.

The checks leave the weights as they were; the environment, the replay buffer's sampling
and the rollout buffer move on.
"""

from __future__ import annotations

import copy
import math
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

try:
    from gymnasium import spaces
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rldebug.integrations.sb3 needs stable-baselines3 (and sb3-contrib for "
        'RecurrentPPO): pip install "rldebug[sb3]"'
    ) from err

from rldebug.diagnostics.ppo import FirstEpochCheckFailed, FirstEpochReport, first_epoch_check

__all__ = [
    "DQNDashboard",
    "DashboardHistory",
    "FirstEpochCheck",
    "first_epoch_report",
    "DQNHooks",
    "OnPolicyHooks",
    "RecurrentPolicyHooks",
    "hooks_for",
]


def _obs_dim(space: Any) -> int:
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"the diagnostics drive models with flat Box observations (obs_dim,), this model "
            f"has {space}"
        )
    return int(space.shape[0])


def _is_recurrent(policy: Any) -> bool:
    return hasattr(policy, "lstm_actor") and hasattr(policy, "lstm_hidden_state_shape")


def _dist_outputs(distribution: Any) -> torch.Tensor:
    """The deterministic numbers behind an SB3 distribution: logits, or the mean."""
    inner = distribution.distribution
    for name in ("logits", "mean", "probs"):
        if hasattr(inner, name):
            return getattr(inner, name)
    raise TypeError(f"cannot read the parameters of a {type(inner).__name__} distribution")


# ---------------------------------------------------------------------------------------
# the first-epoch check
# ---------------------------------------------------------------------------------------


def first_epoch_report(model: Any, *, tol: float = 1e-5) -> FirstEpochReport:
    """Recompute the log-probs of the rollout in ``model.rollout_buffer`` the way the
    training pass does (``policy.evaluate_actions``, training mode, whole sequences from
    the stored initial LSTM states) and compare them with the stored ones."""
    buffer, policy = model.rollout_buffer, model.policy
    if isinstance(buffer.observations, dict):
        raise ValueError("the first-epoch check supports Box observations, not Dict ones")
    if buffer.generator_ready:
        raise ValueError("the rollout buffer was already reshaped for training: check it first")
    n_steps, n_envs = buffer.log_probs.shape

    def env_major(values: np.ndarray) -> torch.Tensor:  # (T, N, ...) -> (N * T, ...)
        tensor = torch.as_tensor(values, device=policy.device).swapaxes(0, 1)
        return tensor.reshape(n_envs * n_steps, *tensor.shape[2:])

    obs = env_major(buffer.observations).float()
    actions = env_major(buffer.actions)
    if isinstance(model.action_space, spaces.Discrete):
        actions = actions.long().flatten()
    was_training = policy.training
    policy.set_training_mode(True)  # as in the training pass: dropout would show here
    try:
        with torch.no_grad():
            if _is_recurrent(policy):
                from sb3_contrib.common.recurrent.type_aliases import RNNStates

                def initial(states: np.ndarray) -> torch.Tensor:  # (n_layers, N, H)
                    return torch.as_tensor(states[0], device=policy.device)

                lstm_states = RNNStates(
                    (initial(buffer.hidden_states_pi), initial(buffer.cell_states_pi)),
                    (initial(buffer.hidden_states_vf), initial(buffer.cell_states_vf)),
                )
                starts = env_major(buffer.episode_starts).float()
                _, log_prob, _ = policy.evaluate_actions(obs, actions, lstm_states, starts)
            else:
                _, log_prob, _ = policy.evaluate_actions(obs, actions)
    finally:
        policy.set_training_mode(was_training)
    new = log_prob.reshape(n_envs, n_steps).T.cpu()
    return first_epoch_check(new, buffer.log_probs, tol=tol, dims=("step", "env"))


class FirstEpochCheck(BaseCallback):
    """``model.learn(..., callback=FirstEpochCheck())`` for PPO and RecurrentPPO.

    At the end of every rollout, before the update, the policy must recompute the
    rollout's log-probs exactly (ratio = 1, KL = 0). ``reports`` keeps one
    :class:`~rldebug.diagnostics.ppo.FirstEpochReport` per rollout; with
    ``raise_on_failure`` the first failure stops training with its (env, step).
    """

    def __init__(self, tol: float = 1e-5, raise_on_failure: bool = True, verbose: int = 0):
        super().__init__(verbose)
        self.tol = tol
        self.raise_on_failure = raise_on_failure
        self.reports: list[FirstEpochReport] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        report = first_epoch_report(self.model, tol=self.tol)
        self.reports.append(report)
        if self.verbose:
            print(report)
        if not report.ok and self.raise_on_failure:
            raise FirstEpochCheckFailed(str(report))


# ---------------------------------------------------------------------------------------
# the DQN dashboard
# ---------------------------------------------------------------------------------------


@dataclass
class DashboardHistory:
    """What :func:`rldebug.dashboard.plot_dashboard` draws, recorded from an SB3 DQN."""

    max_grad_norm: float | None = None
    episode_steps: list[int] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    episode_discounted_returns: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    mean_max_q: list[float] = field(default_factory=list)
    td_errors: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    epsilons: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)  # SB3 evaluates elsewhere
    eval_returns: list[float] = field(default_factory=list)
    eval_q0: list[float] = field(default_factory=list)
    eval_g0: list[float] = field(default_factory=list)
    final_eval: Any = None

    @property
    def config(self) -> Any:
        return types.SimpleNamespace(max_grad_norm=self.max_grad_norm)


class DQNDashboard(BaseCallback):
    """``model.learn(..., callback=DQNDashboard())`` for an SB3 ``DQN``.

    Every ``log_every`` steps it records the loss, the mean max Q on a replay sample, the
    mean |TD error| against the target network, the gradient norm (after SB3's clipping)
    and epsilon; at every episode end the return and the discounted return. In Jupyter
    with ``live=True`` the figure is redrawn in place; ``plot_dashboard(cb.history)``
    draws it afterwards.
    """

    def __init__(self, log_every: int = 100, live: bool = True, title: str = "", sample: int = 64):
        super().__init__()
        self.log_every, self.live, self.title, self.sample = log_every, live, title, sample
        self.history = DashboardHistory()
        self._dashboard = None
        self._discounted: np.ndarray | None = None
        self._discount: np.ndarray | None = None

    def _on_training_start(self) -> None:
        self.history.max_grad_norm = getattr(self.model, "max_grad_norm", None)
        n_envs = self.training_env.num_envs
        self._discounted, self._discount = np.zeros(n_envs), np.ones(n_envs)
        if self.live:
            from rldebug.dashboard import Dashboard

            self._dashboard = Dashboard(title=self.title, every=1)

    def _on_step(self) -> bool:
        rewards, dones = self.locals["rewards"], self.locals["dones"]
        self._discounted += self._discount * rewards
        self._discount *= self.model.gamma
        for i, info in enumerate(self.locals["infos"]):
            if dones[i] and "episode" in info:
                self.history.episode_steps.append(self.num_timesteps)
                self.history.episode_returns.append(float(info["episode"]["r"]))
                self.history.episode_discounted_returns.append(float(self._discounted[i]))
            if dones[i]:
                self._discounted[i], self._discount[i] = 0.0, 1.0
        if self.n_calls % self.log_every == 0:
            self._log()
        return True

    def _log(self) -> None:
        model, history = self.model, self.history
        history.steps.append(self.num_timesteps)
        history.losses.append(float(model.logger.name_to_value.get("train/loss", math.nan)))
        history.epsilons.append(float(model.exploration_rate))
        grads = [p.grad.norm() for p in model.q_net.parameters() if p.grad is not None]
        history.grad_norms.append(float(torch.stack(grads).norm()) if grads else math.nan)
        mean_max_q = td_error = math.nan
        if model.replay_buffer.size() > 0:
            batch = model.replay_buffer.sample(self.sample, env=model._vec_normalize_env)
            with torch.no_grad():
                q = model.q_net(batch.observations)
                next_q = model.q_net_target(batch.next_observations).max(dim=1).values
                target = batch.rewards.flatten() + (1 - batch.dones.flatten()) * (
                    model.gamma * next_q
                )
                q_sa = q.gather(1, batch.actions.long()).flatten()
            mean_max_q = float(q.max(dim=1).values.mean())
            td_error = float((target - q_sa).abs().mean())
        history.mean_max_q.append(mean_max_q)
        history.td_errors.append(td_error)
        if self._dashboard is not None:
            self._dashboard(history)

    def _on_training_end(self) -> None:
        if self._dashboard is not None and self.history.steps:
            self._dashboard(self.history)


# ---------------------------------------------------------------------------------------
# hooks for rldebug.diagnose
# ---------------------------------------------------------------------------------------


def _quiet_logger(model: Any) -> None:
    """``model.train()`` logs; a model that never learned has no logger yet."""
    if getattr(model, "_logger", None) is None:
        model.set_logger(Logger(folder=None, output_formats=[]))


class DQNHooks:
    """Drive an SB3 ``DQN``: its replay samples and its own ``train()`` step.

    ``loss_fn`` runs one gradient step of ``model.train`` on the given batch (so a
    subclass with its own loss is checked as written) and restores the weights and the
    optimiser afterwards; :func:`rldebug.diagnostics.gradients.gradient_mask_report`
    reads the gradients on the way.
    """

    def __init__(self, model: Any, batch_size: int = 32):
        self.model = model
        self.q_network = model.q_net
        self.target_network = model.q_net_target
        self.obs_dim = _obs_dim(model.observation_space)
        self.batch_size = batch_size

    def sample_batch(self) -> Any:
        buffer = self.model.replay_buffer
        if buffer is None or buffer.size() < 2:
            raise ValueError(
                "the replay buffer is empty: let the model act for a few hundred steps "
                "first (model.learn(500) with learning_starts above 500 trains nothing)"
            )
        return buffer.sample(self.batch_size, env=self.model._vec_normalize_env)

    def collapse_inputs(self) -> tuple:
        """The Q-network and up to 1,000 replayed observations, for the one-action check."""
        self.sample_batch()  # an empty buffer is refused with a clear message
        buffer = self.model.replay_buffer
        batch = buffer.sample(min(1_000, buffer.size()), env=self.model._vec_normalize_env)
        return self.q_network, batch.observations, False

    def loss_fn(self, q_network: Any, batch: Any) -> None:
        model, buffer = self.model, self.model.replay_buffer
        saved = (
            copy.deepcopy(model.policy.state_dict()),
            copy.deepcopy(model.policy.optimizer.state_dict()),
            model._n_updates,
        )
        _quiet_logger(model)
        buffer.sample = lambda *args, **kwargs: batch  # this instance only
        try:
            model.train(gradient_steps=1, batch_size=len(batch.observations))
        finally:
            del buffer.sample
            model.policy.load_state_dict(saved[0])
            model.policy.optimizer.load_state_dict(saved[1])
            model._n_updates = saved[2]
        return None


class OnPolicyHooks:
    """Drive an SB3 ``PPO`` / ``A2C`` (or sb3-contrib ``RecurrentPPO``): one rollout,
    then the first-epoch check on it."""

    def __init__(self, model: Any):
        self.model = model
        self.obs_dim = _obs_dim(model.observation_space)

    def first_epoch_stats(self) -> FirstEpochReport:
        """Collect one rollout with the model's own code and check it (ratio = 1)."""
        model = self.model
        if model.env is None:
            raise ValueError("the model has no environment: create it with env=... to check it")
        if getattr(model, "_last_obs", None) is None:
            model._setup_learn(model.n_steps * model.n_envs, None, reset_num_timesteps=False)
        callback = model._init_callback(None)
        callback.on_training_start(locals(), globals())
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        return first_epoch_report(model)


class RecurrentPolicyHooks(OnPolicyHooks):
    """Drive an sb3-contrib ``RecurrentPPO`` policy the way the diagnostics expect.

    ``policy_step(obs, episode_start)`` acts in one environment, keeping its LSTM state
    here and passing ``episode_starts`` to the policy, which resets the state itself;
    it returns the action logits (or means) and the value, never a sample.
    ``training_fn(inputs (B, T, D), state)`` runs whole sequences through the policy's
    training path (``_process_sequence``).
    """

    def __init__(self, model: Any):
        super().__init__(model)  # a model, or its policy alone (then no first-epoch check)
        self.policy = getattr(model, "policy", model)
        self.state = None

    def _zero_state(self, batch: int) -> Any:
        from sb3_contrib.common.recurrent.type_aliases import RNNStates

        layers, _, hidden = self.policy.lstm_hidden_state_shape
        zeros = torch.zeros(layers, batch, hidden, device=self.policy.device)
        return RNNStates((zeros, zeros.clone()), (zeros.clone(), zeros.clone()))

    def policy_step(self, obs: Any, episode_start: bool) -> torch.Tensor:
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.policy.device).reshape(1, -1)
        if self.state is None:
            self.state = self._zero_state(1)
        starts = torch.tensor([float(episode_start)], device=self.policy.device)
        with torch.no_grad():
            distribution, _ = self.policy.get_distribution(obs, self.state.pi, starts)
            _, values, _, self.state = self.policy(obs, self.state, starts, deterministic=True)
        return torch.cat([_dist_outputs(distribution).reshape(-1), values.reshape(-1)])

    def training_fn(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        batch, steps, dim = inputs.shape
        states = self._zero_state(batch).pi if state is None else state
        starts = torch.zeros(batch * steps, device=self.policy.device)
        flat = inputs.reshape(batch * steps, dim)  # sequence after sequence, as in training
        distribution, final = self.policy.get_distribution(flat, states, starts)
        return _dist_outputs(distribution).reshape(batch, steps, -1), final


def hooks_for(model: Any) -> Any:
    """The hooks object that lets :func:`rldebug.diagnose` drive an SB3 model."""
    if hasattr(model, "q_net") and hasattr(model, "q_net_target"):
        return DQNHooks(model)
    if hasattr(model, "rollout_buffer") and _is_recurrent(model.policy):
        return RecurrentPolicyHooks(model)
    if hasattr(model, "rollout_buffer"):
        return OnPolicyHooks(model)
    raise TypeError(
        f"rldebug.diagnose knows DQN, PPO, A2C and RecurrentPPO; got {type(model).__name__}"
    )
