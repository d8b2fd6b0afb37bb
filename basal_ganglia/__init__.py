"""basal_ganglia — striatal critics, dopamine as the TD error, and the RL family (DESIGN §5).

- `striatum`: VentralStriatum V̂(z) (one head per reward basis), DorsalStriatum Q̂(z, a),
  CriticEnsemble (clipped double Q), BasalGanglia (per-step V̂, Q̂, δ), read_cortex.
- `td`: δ = r + γ (1 − terminated) V̂' − V̂, per-basis dopamine, OnlineTD (TD(λ) with traces).
- `returns`: GAE (standard recursion), the seed's truncated and bias-corrected forms, λ-returns.
- `agents`: DQN, DDPG, SVG(0), SAC, REINFORCE, PPO, TD(λ), each a config, networks and
  `update(batch)`; `make_agent(algo, env, ...)` puts one in the closed loop.
- `loop`: the closed loop (`Agent.learn(steps)`, `act(obs, deterministic)`,
  `evaluate(episodes)`): perception → action → environment → replay → learning → recording.
"""
