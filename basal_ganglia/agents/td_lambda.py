"""TD(λ) policy evaluation: V̂ ≈ V_π of a fixed behaviour policy, by λ-returns.

It collects rollouts like the policy-gradient agents but never changes the policy (the
near-uniform initial policy, or one set on `.policy` by the caller) and regresses V̂ onto the
λ-returns G_t(λ) = A_t(λ) + V̂(z_t) (basal_ganglia.returns.td_lambda_returns).
"""

from __future__ import annotations

from dataclasses import dataclass

from basal_ganglia.agents.base import _f
from basal_ganglia.agents.onpolicy import OnPolicyAgent, OnPolicyConfig, Rollout


@dataclass(frozen=True)
class TDLambdaConfig(OnPolicyConfig):
    gae_lambda: float = _f(0.9, "λ of the TD(λ) returns")
    n_envs: int = _f(1, "parallel environments")
    n_steps: int = _f(128, "steps per environment per rollout")
    n_epochs: int = _f(4, "regression passes over each rollout")
    anneal: bool = _f(False, "anneal the learning rate linearly to 0")


class TDLambda(OnPolicyAgent):
    name = "td_lambda"
    config_cls = TDLambdaConfig

    def update(self, rollout: Rollout) -> dict[str, float]:
        self._anneal()
        obs = rollout.obs.reshape(-1, self.state_dim)
        returns = rollout.returns.reshape(-1)
        for _ in range(self.cfg.n_epochs):
            loss = 0.5 * (returns - self.value(obs)).pow(2).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return {"value": loss.item()}
