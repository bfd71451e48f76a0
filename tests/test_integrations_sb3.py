"""rldebug on stable-baselines3 and sb3-contrib models: no false alarm on the libraries' own
code, the planted bug caught, and the callbacks."""

from __future__ import annotations

import matplotlib
import pytest
import torch
import torch.nn.functional as F

import rldebug

matplotlib.use("Agg")
sb3 = pytest.importorskip("stable_baselines3")
sb3_contrib = pytest.importorskip("sb3_contrib")

from sb3_contrib import RecurrentPPO  # noqa: E402
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy  # noqa: E402
from stable_baselines3 import DQN, PPO  # noqa: E402

from rldebug.dashboard import Dashboard, plot_dashboard  # noqa: E402
from rldebug.diagnostics.ppo import FirstEpochCheckFailed  # noqa: E402
from rldebug.diagnostics.recurrent import memory_probe  # noqa: E402
from rldebug.integrations.sb3 import DQNDashboard, FirstEpochCheck, hooks_for  # noqa: E402

rldebug.configure_torch(1)


class BroadcastDQN(DQN):
    """A DQN subclass with its own train(): the target is (B,) + (B, 1) = (B, B)."""

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            with torch.no_grad():
                next_q = self.q_net_target(data.next_observations).max(dim=1).values  # (B,)
                target = data.rewards + (1 - data.dones) * self.gamma * next_q  # (B, B)
            q_sa = self.q_net(data.observations).gather(1, data.actions.long())
            loss = F.smooth_l1_loss(q_sa, target)
            self.policy.optimizer.zero_grad()
            loss.backward()
            self.policy.optimizer.step()


class NoResetInTraining(RecurrentActorCriticPolicy):
    """Resets the LSTM when acting, but not inside the training pass's sequences."""

    @staticmethod
    def _process_sequence(features, lstm_states, episode_starts, lstm):
        if features.shape[0] > lstm_states[0].shape[1]:  # whole sequences: training
            episode_starts = torch.zeros_like(episode_starts)
        return RecurrentActorCriticPolicy._process_sequence(
            features, lstm_states, episode_starts, lstm
        )


def _dqn(cls=DQN):
    model = cls("MlpPolicy", "CartPole-v1", learning_starts=200, seed=0, device="cpu")
    dashboard = DQNDashboard(log_every=100, live=False)
    model.learn(300, callback=dashboard)
    return model, dashboard


def _recurrent_ppo(policy="MlpLstmPolicy"):
    return RecurrentPPO(
        policy, "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu",
        policy_kwargs={"lstm_hidden_size": 16},
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore:Using a target size")  # the planted bug, while it trains
def test_dqn_passes_and_the_broadcast_subclass_is_caught():
    model, _ = _dqn()
    before = [p.detach().clone() for p in model.policy.parameters()]
    good = rldebug.diagnose(model, show=False)
    assert good["gradient mask"].passed and not good.failed, str(good)
    assert all(torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    bad = rldebug.diagnose(_dqn(BroadcastDQN)[0], show=False)
    assert bad.failed == ["gradient mask"]
    assert (
        "broadcast" in bad["gradient mask"].summary and "rows mixed" in bad["gradient mask"].details
    )


def test_dqn_dashboard_callback_records_and_plots():
    _, dashboard = _dqn()
    history = dashboard.history
    assert history.steps == [100, 200, 300] and len(history.episode_returns) >= 5
    assert history.epsilons[-1] == pytest.approx(0.05)  # SB3's final exploration rate
    assert history.grad_norms[-1] > 0 and history.losses[-1] > 0  # it trains from step 200
    assert plot_dashboard(history).axes
    with pytest.raises(TypeError, match="DQNDashboard"):
        plot_dashboard(DQN("MlpPolicy", "CartPole-v1", device="cpu"))
    with pytest.raises(TypeError, match="DQNDashboard"):
        DQN("MlpPolicy", "CartPole-v1", device="cpu").learn(10, callback=Dashboard())


def test_recurrent_ppo_passes_every_check():
    diagnosis = rldebug.diagnose(_recurrent_ppo(), show=False)
    assert diagnosis.passed == ["memory probe", "leak test", "first-epoch check"], str(diagnosis)
    assert isinstance(hooks_for(_recurrent_ppo()).policy_step(torch.zeros(4), True), torch.Tensor)
    probe = memory_probe(_recurrent_ppo().policy, 4, seq_len=12, max_lag=6, batch_size=8)
    assert probe.has_memory  # the policy alone, in one line


def test_a_training_pass_without_resets_is_caught_with_env_and_step():
    diagnosis = rldebug.diagnose(_recurrent_ppo(NoResetInTraining), show=False)
    assert diagnosis.failed == ["first-epoch check"], str(diagnosis)
    assert "(env 0, step" in diagnosis["first-epoch check"].summary
    with pytest.raises(FirstEpochCheckFailed, match=r"\(env \d+, step \d+\)"):
        _recurrent_ppo(NoResetInTraining).learn(128, callback=FirstEpochCheck())


def test_first_epoch_callback_is_silent_on_ppo_and_recurrent_ppo():
    for model in (_recurrent_ppo(), PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64,
                                        n_epochs=1, seed=0, device="cpu")):  # fmt: skip
        check = FirstEpochCheck()
        model.learn(128, callback=check)
        assert len(check.reports) == 2 and all(r.ok for r in check.reports)
