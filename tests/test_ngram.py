import numpy as np
import pytest

from rnn_jax.ngram import NGram


def test_unigram_is_smoothed_frequency():
    train = np.array([0, 0, 0, 1])
    m = NGram(1, 3).fit(train)
    # Witten-Bell with the empty context: (C(c) + N1+ * 1/V) / (N + N1+) = (3 + 2/3) / 6 for c = 0
    p = 2 ** m.log2_probs(np.array([0, 1, 2]))
    np.testing.assert_allclose(p, [(3 + 2 / 3) / 6, (1 + 2 / 3) / 6, (2 / 3) / 6])
    assert abs(p.sum() - 1) < 1e-12


@pytest.mark.parametrize("order", [1, 2, 3])
def test_distribution_sums_to_one(order):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 4, 500)
    m = NGram(order, 4).fit(train)
    ctx = train[:order - 1].tolist()
    total = sum(2 ** m.log2_probs(np.array(ctx + [c]))[-1] for c in range(4))
    assert abs(total - 1) < 1e-12


def test_higher_order_wins_on_structured_text():
    text = np.array([0, 1, 2, 3] * 500)
    bpc = [NGram(n, 4).fit(text).bits_per_char(text[:400]) for n in (1, 2)]
    assert abs(bpc[0] - 2.0) < 0.01 and bpc[1] < 0.05


def test_order_overflow_is_refused():
    with pytest.raises(ValueError, match="too large"):
        NGram(20, 100)
