"""bench/sac_update_split.py: the FLOPs it counts from the profiler's shapes are those of
the products that ran, for every product op it names, and its split adds up."""

from __future__ import annotations

import pytest
import torch
from helpers import load_bench_script
from torch.profiler import ProfilerActivity, profile

from mbrl_fast.nn.dense import _linear, onednn_available


def _profiled(fn):
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return prof.events()


def test_counts_the_flops_of_each_product_op():
    bench = load_bench_script("sac_update_split")
    a, b = torch.randn(3, 5), torch.randn(5, 7)
    ba, bb = torch.randn(2, 3, 5), torch.randn(2, 5, 7)

    def products():
        torch.mm(a, b)                                   # 2 * 3 * 5 * 7 = 210
        torch.addmm(torch.zeros(7), a, b)                # 210
        torch.bmm(ba, bb)                                # 420
        torch.baddbmm(torch.zeros(2, 1, 7), ba, bb)      # 420
        torch.relu(a)                                    # not a product

    split = bench.split_profile(_profiled(products), updates=1)
    assert split["gemm_mflop_per_update"] == pytest.approx(1260 / 1e6, abs=0.05)
    flops = {e.name: bench.gemm_flops(e.name, e.input_shapes)
             for e in _profiled(products) if e.name in bench.GEMM_OPS}
    assert flops == {"aten::mm": 210, "aten::addmm": 210, "aten::bmm": 420,
                     "aten::baddbmm": 420}
    assert "aten::relu" in split["top_other_ms_per_update"] \
        or "aten::clamp_min" in split["top_other_ms_per_update"]


@pytest.mark.skipif(not onednn_available(), reason="oneDNN's linear is not in this torch build")
def test_counts_onednn_linear_as_the_sac_update_calls_it():
    bench = load_bench_script("sac_update_split")
    x, w_t = torch.randn(40, 32), torch.randn(64, 32)  # large enough for oneDNN (_linear)
    x3, w3 = torch.randn(2, 9, 11), torch.randn(13, 11)  # leading dims: all rows count

    def products():
        _linear(x, w_t, torch.zeros(64), relu=True)
        torch.ops.mkldnn._linear_pointwise(x3, w3, None, "none", [], "")

    events = [e for e in _profiled(products) if e.name in bench.GEMM_OPS]
    assert [e.name for e in events] == ["mkldnn::_linear_pointwise"] * 2
    assert [bench.gemm_flops(e.name, e.input_shapes) for e in events] == \
        [2 * 40 * 32 * 64, 2 * 18 * 11 * 13]


def test_rejects_an_op_it_does_not_know():
    bench = load_bench_script("sac_update_split")
    with pytest.raises(ValueError, match="name must be one of"):
        bench.gemm_flops("aten::relu", [(3, 5)])


def test_replays_each_product_with_its_shapes_strides_and_dtype():
    bench = load_bench_script("sac_update_split")
    a, b = torch.randn(3, 5), torch.randn(7, 5).t()               # a transposed view
    ba, bb = torch.randn(2, 3, 5).bfloat16(), torch.randn(2, 5, 7).bfloat16()
    bias = torch.zeros(2, 1, 7).bfloat16().expand(2, 3, 7)        # stride 0

    def products():
        torch.mm(a, b)
        torch.baddbmm(bias, ba, bb)

    want = [torch.mm(a, b), torch.baddbmm(bias, ba, bb)]
    events = _profiled(lambda: (products(), products()))
    got = [call() for call in bench.gemm_calls(events, updates=2)]
    assert [(g.shape, g.dtype) for g in got] == [(w.shape, w.dtype) for w in want]
    with pytest.raises(ValueError, match="do not split into 3 updates"):
        bench.gemm_calls(events, updates=3)
