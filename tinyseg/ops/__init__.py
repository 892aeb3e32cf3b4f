"""The operator textbook: pure functions on raw arrays, one topic per file.

Each operator is a pair ``<op>_forward(x, ...) -> (out, cache)`` and
``<op>_backward(dout, cache) -> grads``, with a slow loop version beside it
(``<op>_naive``) that tests and readers use as the definition.
Read them in this order: conv, pool, resize, activation, norm, loss.
"""
