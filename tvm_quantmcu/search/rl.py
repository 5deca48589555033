"""RL-agent mixed precision (Fariselli et al., HAQ-style): an actor-critic agent walks the
patch-stage feature maps and picks a width per map; the episode reward is the validation
accuracy change plus a BitOPs-saving term, and a policy that breaks the RAM budget gets a
large negative reward. DDPG-like: deterministic linear actor with Gaussian exploration, a
quadratic critic fitted by least squares on the replay buffer, actor ascent along dQ/da."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

BITS_OF_ACTION = ((1 / 3, 2), (2 / 3, 4), (1.01, 8))


def action_bits(a: float) -> int:
    for edge, b in BITS_OF_ACTION:
        if a < edge:
            return b
    return 8


@dataclass
class RLResult:
    bits: dict[str, int]
    reward: float
    episodes: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def _features(s: np.ndarray, a: float) -> np.ndarray:
    return np.concatenate([s, [a, a * a], s * a, [1.0]])


def run_agent(maps: list[str], state_of, evaluate, budget_ok, episodes: int = 40,
              seconds: float = 120.0, seed: int = 0, kappa: float = 0.1,
              progress=None) -> RLResult:
    """maps: tensors in dataflow order; state_of(i, prev_action) → feature vector;
    evaluate(bits) → (accuracy_drop_pt, bitops_saving_pct); budget_ok(bits) → bool."""
    rng = np.random.default_rng(seed)
    dim = len(state_of(0, 1.0))
    theta = np.zeros(dim + 1)
    theta[-1] = 1.5                       # start near 8 bits: sigmoid(1.5) ≈ 0.82
    buf_x, buf_r = [], []
    best = RLResult({}, -np.inf, 0, 0.0)
    history: list[dict] = []
    t0, sigma = time.time(), 0.5
    w = None
    for ep in range(episodes):
        if time.time() - t0 > seconds and ep >= 2:
            break
        prev, bits, steps = 1.0, {}, []
        for i, m in enumerate(maps):
            s = np.asarray(state_of(i, prev), np.float64)
            a = 1 / (1 + np.exp(-(theta[:-1] @ s + theta[-1])))
            a = float(np.clip(a + rng.normal(0, sigma), 0.0, 1.0))
            bits[m] = action_bits(a)
            steps.append((s, a))
            prev = a
        if budget_ok(bits):
            drop, saving = evaluate(bits)
            reward = -drop + kappa * saving
        else:
            drop, saving, reward = None, None, -100.0
        best_bits = {k: v for k, v in bits.items() if v != 8}
        if reward > best.reward:
            best = RLResult(best_bits, reward, 0, 0.0)
        history.append({"episode": ep, "bits": best_bits, "reward": round(reward, 3),
                             "drop_pt": drop, "saving_pct": saving})
        for s, a in steps:
            buf_x.append(_features(s, a))
            buf_r.append(reward)
        # critic: Q(s, a) by ridge least squares over the replay buffer
        X, R = np.array(buf_x), np.array(buf_r)
        w = np.linalg.solve(X.T @ X + 1e-2 * np.eye(X.shape[1]), X.T @ R)
        # actor: ascend dQ/da · da/dθ at the visited states
        grad = np.zeros_like(theta)
        for s, _ in steps:
            z = theta[:-1] @ s + theta[-1]
            a = 1 / (1 + np.exp(-z))
            dq_da = w[dim] + 2 * w[dim + 1] * a + w[dim + 2:2 * dim + 2] @ s
            grad += dq_da * a * (1 - a) * np.append(s, 1.0)
        theta += 0.05 * grad / max(1.0, np.linalg.norm(grad))
        sigma = max(0.1, sigma * 0.93)
        if progress is not None:
            progress(1)
    best.history = history
    best.episodes = len(history)
    best.seconds = time.time() - t0
    return best
