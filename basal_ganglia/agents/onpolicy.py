"""Policy-gradient agents: REINFORCE with a baseline and PPO with GAE.

One loop, `OnPolicyAgent.learn`: step `n_envs` copies of the environment for `n_steps`,
compute δ (the dopamine of every step) and the advantages with the chosen estimator of
basal_ganglia.returns, then `update`. Vector environments run in same-step autoreset mode, so
the observation a finished step led to (`final_obs`) is at hand to bootstrap truncated
episodes, and the action of every step is a real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from basal_ganglia.agents.base import Agent, AgentConfig, _f, log_action_free_energy
from basal_ganglia.returns import ESTIMATORS, td_errors
from basal_ganglia.striatum import VentralStriatum
from cortex.action import point_mass_terms
from cortex.policy import CategoricalPolicy, GaussianPolicy


@dataclass(frozen=True)
class OnPolicyConfig(AgentConfig):
    learning_rate: float = _f(1e-3, "Adam learning rate (linearly annealed to 0 if anneal)")
    hidden: tuple[int, ...] = _f((64, 64), "hidden layer widths of policy and V̂ (tanh)")
    n_envs: int = _f(8, "parallel environments")
    n_steps: int = _f(32, "steps per environment per rollout")
    gae_lambda: float = _f(0.95, "λ of the advantage estimator")
    advantage: str = _f("gae", "advantage estimator: gae | truncated | bias_corrected")
    vf_coef: float = _f(0.5, "weight of the V̂ loss")
    ent_coef: float = _f(0.0, "entropy bonus weight")
    max_grad_norm: float = _f(0.5, "gradient norm clip")
    normalize_advantage: bool = _f(True, "standardise advantages per minibatch")
    anneal: bool = _f(True, "anneal learning rate (and PPO's clip range) linearly to 0")


@dataclass(frozen=True)
class PPOConfig(OnPolicyConfig):
    """rl-zoo CartPole-v1 settings by default."""

    gamma: float = _f(0.98, "discount factor γ")
    gae_lambda: float = _f(0.8, "λ of the advantage estimator")
    batch_size: int = _f(256, "minibatch size")
    n_epochs: int = _f(20, "passes over each rollout")
    clip_range: float = _f(0.2, "PPO ratio clip ε")


@dataclass(frozen=True)
class ReinforceConfig(OnPolicyConfig):
    """Monte Carlo returns (λ = 1) with the ventral V̂ as baseline, one step per rollout."""

    gamma: float = _f(0.99, "discount factor γ")
    gae_lambda: float = _f(1.0, "λ (1 = Monte Carlo returns, the REINFORCE choice)")
    n_steps: int = _f(256, "steps per environment per rollout")
    learning_rate: float = _f(3e-3, "Adam learning rate")


def _orthogonal_init(module: nn.Module, out_gain: float) -> None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    for i, m in enumerate(linears):
        nn.init.orthogonal_(m.weight, out_gain if i == len(linears) - 1 else np.sqrt(2))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@dataclass
class Rollout:
    """Tensors of shape (T, N[, …]) from one collection phase."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    rewards: torch.Tensor
    values: torch.Tensor
    next_values: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    delta: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


class OnPolicyAgent(Agent):
    config_cls = OnPolicyConfig

    def build(self) -> None:
        cfg = self.cfg
        if cfg.advantage not in ESTIMATORS:
            raise ValueError(f"unknown advantage estimator {cfg.advantage!r}; choose from "
                             f"{', '.join(ESTIMATORS)}")
        hidden = tuple(cfg.hidden)
        self.policy = (CategoricalPolicy(self.state_dim, self.action_dim, hidden) if self.discrete
                       else GaussianPolicy(self.state_dim, self.action_dim, hidden))
        self.value = VentralStriatum(self.state_dim, hidden)
        _orthogonal_init(self.policy, 0.01)
        _orthogonal_init(self.value, 1.0)
        self.policy.to(self.device)
        self.value.to(self.device)
        self.optimizer = torch.optim.Adam([*self.policy.parameters(), *self.value.parameters()],
                                          lr=cfg.learning_rate, eps=1e-5)
        self.envs = None

    def act(self, obs, deterministic: bool = False):
        with torch.no_grad():
            z = self.obs_tensor(obs)
            a = self.policy.mode(z) if deterministic else self.policy.sample(z)[0]
        a = a.cpu().numpy()
        if self.discrete:
            return int(a) if a.ndim == 0 else a
        return np.clip(a, self.action_space.low, self.action_space.high).astype(np.float32)

    def _make_envs(self):
        self.envs = gym.vector.SyncVectorEnv([self.make_env for _ in range(self.cfg.n_envs)],
                                             autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self._obs, _ = self.envs.reset(seed=self.seed)
        self._ep_return = np.zeros(self.cfg.n_envs)

    def collect(self) -> Rollout:
        """Step every environment n_steps times; advantages by the configured estimator."""
        cfg, n = self.cfg, self.cfg.n_envs
        buf = {k: [] for k in ("obs", "actions", "log_probs", "rewards", "values", "final",
                               "terminated", "truncated")}
        for _ in range(cfg.n_steps):
            z = self.obs_tensor(self._obs)
            with torch.no_grad():
                a, logp = self.policy.sample(z)
                v = self.value(z)
            a_np = a.cpu().numpy()
            env_a = a_np if self.discrete else np.clip(a_np, self.action_space.low,
                                                       self.action_space.high)
            next_obs, r, term, trunc, info = self.envs.step(env_a)
            final = next_obs.copy()
            if "_final_obs" in info:
                for i in np.flatnonzero(info["_final_obs"]):
                    final[i] = info["final_obs"][i]
            for k, val in (("obs", z), ("actions", a), ("log_probs", logp), ("values", v)):
                buf[k].append(val)
            buf["rewards"].append(r)
            buf["final"].append(final)
            buf["terminated"].append(term)
            buf["truncated"].append(trunc)
            self._ep_return += r
            self.num_steps += n
            for i in np.flatnonzero(term | trunc):
                self._log_episode(float(self._ep_return[i]))
                self._ep_return[i] = 0.0
            self._obs = next_obs
        t = {k: torch.stack(buf[k]) for k in ("obs", "actions", "log_probs", "values")}
        as_t = lambda x, dt=torch.float32: torch.as_tensor(np.asarray(x), dtype=dt,
                                                           device=self.device)
        rewards = as_t(buf["rewards"])
        terminated, truncated = as_t(buf["terminated"], torch.bool), as_t(buf["truncated"],
                                                                          torch.bool)
        with torch.no_grad():
            final = as_t(buf["final"])
            next_values = self.value(final.reshape(-1, self.state_dim)).reshape(rewards.shape)
        estimator = ESTIMATORS[cfg.advantage]
        adv = estimator(rewards, t["values"], next_values, terminated, truncated, cfg.gamma,
                        cfg.gae_lambda)
        delta = td_errors(rewards, t["values"], next_values, terminated, cfg.gamma)
        return Rollout(t["obs"], t["actions"], t["log_probs"], rewards, t["values"], next_values,
                       terminated, truncated, delta, adv, adv + t["values"])

    def learn(self, steps: int, *, recorder=None, callback=None, progress=None):
        """Run at least `steps` environment steps (whole rollouts); returns self."""
        self.history.recorder = recorder
        if self.envs is None:
            self._make_envs()
        start, per_rollout = self.num_steps, self.cfg.n_envs * self.cfg.n_steps
        self.total_steps = start + steps
        while self.num_steps < self.total_steps:
            before = self.num_steps
            rollout = self.collect()
            if recorder is not None:
                self._log_env(rollout.obs.cpu(), rollout.actions.cpu(), rollout.rewards.cpu(),
                              rollout.terminated.cpu(), rollout.truncated.cpu())
                self.history.log("basal_ganglia/dopamine", rollout.delta.cpu().numpy(),
                                 "dopamine δ per step of a rollout, shape (n_steps, n_envs)")
                self.history.log("basal_ganglia/value", rollout.values.cpu().numpy(),
                                 "ventral striatum V̂ per step of a rollout (n_steps, n_envs)")
            self.progress_remaining = 1.0 - (self.num_steps - start) / max(1, steps)
            self._log_losses(self.update(rollout))
            self._maybe_evaluate(before)
            if progress is not None:
                progress.update(per_rollout)
            if callback is not None and callback(self) is False:
                break
        return self

    def _loss_terms(self, z, a, ret):
        """log π(a|z), entropy, V̂(z) and the V̂ loss of a minibatch."""
        logp = self.policy.log_prob(z, a)
        entropy = self.policy.entropy(z)
        v = self.value(z)
        v_loss = (ret - v).pow(2).mean()  # as SB3: vf_coef · MSE
        return logp, entropy, v, v_loss

    def _step(self, loss) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_([*self.policy.parameters(), *self.value.parameters()],
                                 self.cfg.max_grad_norm)
        self.optimizer.step()

    def _anneal(self) -> float:
        frac = self.progress_remaining if self.cfg.anneal else 1.0
        for g in self.optimizer.param_groups:
            g["lr"] = self.cfg.learning_rate * frac
        return frac

    def _record_free_energy(self, v, logp, entropy) -> None:
        terms = point_mass_terms(v.detach(), logp.detach(), entropy.detach(),
                                 entropy_coef=self.cfg.ent_coef)
        log_action_free_energy(self.history, terms)


class PPO(OnPolicyAgent):
    """PPO-clip (Schulman et al. 2017) with the GAE recursion (or the seed's forms, `advantage`)."""

    name = "ppo"
    config_cls = PPOConfig

    def update(self, rollout: Rollout) -> dict[str, float]:
        cfg = self.cfg
        frac = self._anneal()
        clip = cfg.clip_range * frac
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        obs, actions, old_logp = flat(rollout.obs), flat(rollout.actions), flat(rollout.log_probs)
        advantages, returns = flat(rollout.advantages), flat(rollout.returns)
        n = len(obs)
        stats = {"policy": [], "value": [], "entropy": [], "clip_fraction": []}
        for _ in range(cfg.n_epochs):
            perm = torch.as_tensor(self.rng.permutation(n))
            for start in range(0, n, cfg.batch_size):
                idx = perm[start:start + cfg.batch_size]
                adv = advantages[idx]
                if cfg.normalize_advantage and len(idx) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                logp, entropy, v, v_loss = self._loss_terms(obs[idx], actions[idx], returns[idx])
                ratio = (logp - old_logp[idx]).exp()
                pg_loss = -torch.minimum(adv * ratio,
                                         adv * ratio.clamp(1 - clip, 1 + clip)).mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy.mean()
                self._step(loss)
                stats["policy"].append(pg_loss.item())
                stats["value"].append(v_loss.item())
                stats["entropy"].append(entropy.mean().item())
                stats["clip_fraction"].append(((ratio - 1).abs() > clip).float().mean().item())
        self._record_free_energy(v, logp, entropy)
        return {k: float(np.mean(s)) for k, s in stats.items()}


class Reinforce(OnPolicyAgent):
    """REINFORCE with the ventral V̂ as baseline: Φ = G_τ − V̂(z_τ), one gradient step per rollout."""

    name = "reinforce"
    config_cls = ReinforceConfig

    def update(self, rollout: Rollout) -> dict[str, float]:
        cfg = self.cfg
        self._anneal()
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        obs, actions = flat(rollout.obs), flat(rollout.actions)
        adv, returns = flat(rollout.advantages), flat(rollout.returns)
        if cfg.normalize_advantage:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        logp, entropy, v, v_loss = self._loss_terms(obs, actions, returns)
        pg_loss = -(adv * logp).mean()
        self._step(pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy.mean())
        self._record_free_energy(v, logp, entropy)
        return {"policy": pg_loss.item(), "value": v_loss.item(), "entropy": entropy.mean().item()}
