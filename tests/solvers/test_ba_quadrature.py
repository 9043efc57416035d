"""BA quadrature rules: nodes and weights against numpy, exactness up to each rule's degree."""
import numpy as np
import pytest
from numpy.polynomial import legendre

from solvers.ba import quadrature as q

ALL_RULES = [q.TRAPEZOID, q.LOBATTO3, q.LOBATTO4, q.LOBATTO5, q.SIMPSON13, q.SIMPSON38,
             q.two_interior_node_rule(0.2), q.two_interior_node_rule(0.4), *q.GAUSS_LEGENDRE.values()]


def integrate(rule, k):
    """The rule applied to c^k on [0, 1]; the exact value is 1 / (k + 1)."""
    return rule.combine([c**k for c in rule.nodes])


@pytest.mark.parametrize("n", range(1, 6))
def test_gauss_legendre_matches_numpy(n):
    x, w = legendre.leggauss(n)
    rule = q.gauss_legendre(n)
    np.testing.assert_allclose(rule.nodes, (x + 1) / 2, rtol=0, atol=1e-14)
    np.testing.assert_allclose(rule.weights, w / 2, rtol=0, atol=1e-14)
    assert rule.degree == 2 * n - 1


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_gauss_lobatto_matches_legendre_construction(n):
    """Lobatto: the ends and the roots of P'_{n-1}; weights 2 / (n (n - 1) P_{n-1}(x)^2) on [-1, 1]."""
    p = legendre.Legendre.basis(n - 1)
    x = np.concatenate([[-1.0], np.sort(p.deriv().roots().real), [1.0]])
    w = 2.0 / (n * (n - 1) * p(x) ** 2)
    rule = q.GAUSS_LOBATTO[n]
    np.testing.assert_allclose(rule.nodes, (x + 1) / 2, rtol=0, atol=1e-14)
    np.testing.assert_allclose(rule.weights, w / 2, rtol=0, atol=1e-14)
    assert rule.degree == 2 * n - 3


def test_simpson_and_lobatto4_weights_as_the_docs_write_them():
    np.testing.assert_allclose(q.SIMPSON13.weights, [1 / 6, 4 / 6, 1 / 6])
    np.testing.assert_allclose(q.SIMPSON38.nodes, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(q.SIMPSON38.weights, [1 / 8, 3 / 8, 3 / 8, 1 / 8])
    np.testing.assert_allclose(q.LOBATTO4.nodes[1], (1 - 1 / np.sqrt(5)) / 2)
    np.testing.assert_allclose(q.LOBATTO4.weights, [1 / 12, 5 / 12, 5 / 12, 1 / 12])


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.name)
def test_exact_up_to_its_degree_and_not_beyond(rule):
    for k in range(rule.degree + 1):
        assert integrate(rule, k) == pytest.approx(1 / (k + 1), abs=1e-14), (rule.name, k)
    assert abs(integrate(rule, rule.degree + 1) - 1 / (rule.degree + 2)) > 1e-8, rule.name


@pytest.mark.parametrize("family, nodes, expected", [
    ("lobatto", 0, q.TRAPEZOID), ("simpson", 0, q.TRAPEZOID), ("lobatto", 1, q.LOBATTO3),
    ("simpson", 1, q.SIMPSON13), ("lobatto", 2, q.LOBATTO4), ("simpson", 2, q.SIMPSON38),
])
def test_bi_anchor_rule_by_family_and_node_count(family, nodes, expected):
    assert q.bi_anchor_rule(family, nodes) == expected


@pytest.mark.parametrize("kwargs, message", [
    (dict(family="gauss", nodes=2), "rule must be one of"),
    (dict(family="lobatto", nodes=3), "must be 0, 1 or 2"),
    (dict(family=None, nodes=1, a=0.3), "needs nodes = 2"),
    (dict(family=None, nodes=2, a=0.5), "0 < a < 1/2"),
])
def test_bad_rule_requests_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        q.bi_anchor_rule(**kwargs)
