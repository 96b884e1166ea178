"""torch.fx importer: operator mapping, float agreement with PyTorch, errors, provenance, persistence."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from microai.graph.ir import Graph, GraphError
from microai.graph.torch_import import from_torch
from microai.quant import reference as R


class Block(nn.Module):
    """Residual block with BatchNorm, a 1x1 projection shortcut and a functional ReLU."""

    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__()
        conv, bn, pool = ((nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d) if dims == 1
                          else (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d))
        self.conv1, self.bn1 = conv(cin, cout, 3, padding=1), bn(cout)
        self.conv2, self.bn2 = conv(cout, cout, 3, padding=1, bias=False), bn(cout)
        self.pool = pool(2)
        self.short = nn.Sequential(conv(cin, cout, 1), pool(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(self.pool(y)))
        return torch.relu(y + self.short(x))


class ResNetLike(nn.Module):
    def __init__(self, dims: int, cin: int, classes: int = 5) -> None:
        super().__init__()
        self.block1 = Block(dims, cin, 8)
        self.block2 = Block(dims, 8, 8)
        self.drop = nn.Dropout(0.3)
        self.gap = nn.AdaptiveMaxPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(x))
        x = self.gap(self.drop(x))
        return self.fc(x.view(x.size(0), -1))


def _randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.3)


def _torch_out(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize(("dims", "shape"), [(1, (3, 32)), (2, (3, 12, 12))])
def test_resnet_like_with_batchnorm_reproduces_pytorch(dims: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(dims)
    model = ResNetLike(dims, shape[0])
    _randomize_batchnorm(model)
    g = from_torch(model, shape)
    ops = [n.op for n in g.nodes]
    assert ops.count("BatchNorm") == 4 and ops.count("Add") == 2 and "Identity" not in ops
    x = np.random.default_rng(0).normal(size=(16, *shape)).astype(np.float32)
    diff = np.abs(R.run(g, x) - _torch_out(model, x)).max()
    assert diff < 1e-5


def test_paper_resnetv1_6_imports_with_the_paper_parameter_and_mac_counts() -> None:
    from microai.models import build_model

    f = 16
    g = from_torch(build_model("resnetv1-6", (9, 128), 6, f), (9, 128))
    assert g.param_count() == 13 * f * f + 39 * f + 6 == 3958
    assert g.macs() == 1088 * f * f + 3462 * f
    assert g.node(g.output).shape == (6,)


class Mixed(nn.Module):
    """Every other supported spelling: functional/method calls, padding variants, pools, softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 2, 0, 1))
        self.conv = nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0))
        self.same = nn.Conv2d(4, 4, 4, padding="same")
        self.cpad = nn.ConstantPad2d(1, 0.0)
        self.avg = nn.AvgPool2d(2)
        self.id = nn.Identity()
        self.fc = nn.Linear(4 * 5 * 6, 3, bias=False)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x)).relu()
        x = torch.add(self.same(x), x)
        x = self.avg(self.id(self.cpad(x)))
        x = F.dropout(x, 0.5, self.training)
        return self.softmax(self.fc(torch.flatten(x, 1)))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_every_supported_spelling_maps_and_reproduces_pytorch() -> None:
    torch.manual_seed(0)
    model = Mixed()
    g = from_torch(model, (2, 15, 9), name="mixed")
    by_name = {n.name: n for n in g.nodes}
    assert by_name["pad"].op == "ZeroPadding2D" and by_name["pad"].attrs["padding"] == [0, 1, 1, 2]
    assert by_name["conv"].attrs == {"stride": [2, 1], "padding": [1, 1, 0, 0]}
    assert by_name["same"].attrs["padding"] == [1, 2, 1, 2]
    assert by_name["cpad"].op == "ZeroPadding2D"
    assert [n.op for n in g.nodes].count("Identity") == 0
    assert np.all(by_name["fc"].weights["bias"] == 0)
    assert g.metadata["name"] == "mixed" and g.metadata["model_class"].endswith("Mixed")
    assert g.metadata["torch_modules"]["conv"] == "conv"
    x = np.random.default_rng(1).normal(size=(8, 2, 15, 9)).astype(np.float32)
    assert np.abs(R.run(g, x) - _torch_out(model, x)).max() < 1e-6


def test_adaptive_pools_become_exact_pools_and_1d_padding_maps() -> None:
    model = nn.Sequential(nn.ZeroPad1d((2, 1)), nn.Conv1d(1, 2, 3), nn.AdaptiveAvgPool1d(4),
                          nn.AdaptiveMaxPool1d(2), nn.Flatten(), nn.Linear(4, 2))
    g = from_torch(model, (1, 15))
    assert [n.op for n in g.nodes][1:4] == ["ZeroPadding1D", "Conv1D", "AvgPool1D"]
    assert g.nodes[1].attrs["padding"] == [2, 1]
    assert g.nodes[3].attrs == {"pool_size": 4, "stride": 4} and g.nodes[4].attrs["pool_size"] == 2
    x = np.random.default_rng(2).normal(size=(4, 1, 15)).astype(np.float32)
    assert np.abs(R.run(g, x) - _torch_out(model, x)).max() < 1e-6


class FunctionalMnist(nn.Module):
    """PyTorch's MNIST example (shrunk): functional ReLU and max pooling, torch.flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 8, 3)
        self.fc1, self.fc2 = nn.Linear(8 * 5 * 5, 16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def test_functional_spellings_map_to_the_same_operators() -> None:
    torch.manual_seed(4)
    mnist = from_torch(FunctionalMnist(), (1, 14, 14))
    assert [n.op for n in mnist.nodes] == ["Input", "Conv2D", "ReLU", "Conv2D", "ReLU", "MaxPool2D",
                                          "Flatten", "Dense", "ReLU", "Dense"]
    gap = _Call(lambda x: torch.reshape(x.mean((2, 3), keepdim=True), (x.shape[0], -1)))
    pooled = from_torch(gap, (3, 4, 6))
    assert [(n.op, n.attrs) for n in pooled.nodes[1:]] == [
        ("AvgPool2D", {"pool_size": [4, 6], "stride": [4, 6]}), ("Flatten", {})]
    cases = [
        (FunctionalMnist(), (1, 14, 14)),
        (gap, (3, 4, 6)),
        (_Call(lambda x: F.avg_pool2d(F.adaptive_avg_pool2d(x, (2, 3)), 2, stride=1)), (2, 4, 6)),
        (_Call(lambda x: x.mean(dim=2) + F.adaptive_avg_pool1d(x, 1).squeeze(2)), (3, 8)),
        (_Call(lambda x: (x.sum(), F.avg_pool1d(F.pad(x, (2, 1)), 2))[1]), (3, 7)),  # the sum is dead code
    ]
    for model, shape in cases:
        g = from_torch(model, shape)
        x = np.random.default_rng(5).normal(size=(4, *shape)).astype(np.float32)
        assert np.abs(R.run(g, x) - _torch_out(model, x)).max() < 1e-6


def test_import_keeps_the_models_training_mode() -> None:
    model = ResNetLike(1, 2).train()
    from_torch(model, (2, 16))
    assert all(m.training for m in model.modules())


class _Call(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


@pytest.mark.parametrize(
    ("model", "shape", "message"),
    [
        (nn.Sequential(nn.Conv1d(4, 4, 3, groups=2)), (4, 8), r"groups=2 at fx node '_0' \(module '0'\)"),
        (nn.Sequential(nn.Conv1d(2, 2, 3, dilation=2)), (2, 8), "dilation"),
        (nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")), (2, 8, 8),
         "padding_mode='reflect'"),
        (nn.Sequential(nn.Linear(3, 3), nn.GELU()), (3,), r"module GELU at fx node '_1' \(module '1'\)"),
        (_Call(torch.sigmoid), (3,), "function sigmoid at fx node 'sigmoid'"),
        (_Call(lambda x: x.exp()), (3,), r"tensor method .exp\(\)"),
        (_Call(lambda x: x * 2), (3,), "function mul"),
        (_Call(lambda x: x + 1), (3,), "non-tensor operand 1"),
        (nn.Sequential(nn.AdaptiveAvgPool1d(3)), (2, 8), "must divide"),
        (nn.Sequential(nn.MaxPool1d(3, ceil_mode=True)), (2, 8), "ceil_mode"),
        (nn.Sequential(nn.ConstantPad1d(1, 0.5)), (2, 8), "value 0.5"),
        (nn.Sequential(nn.Softmax(dim=1)), (2, 8), "class dimension"),
        (nn.Sequential(nn.Flatten(0)), (2, 8), "start_dim=0"),
        (_Call(lambda x: x.view(-1)), (2, 8), "not a flatten keeping the batch"),
        (_Call(lambda x: torch.flatten(x)), (2, 8), "start_dim=0"),
        (nn.Sequential(nn.BatchNorm1d(2, track_running_stats=False)), (2, 8), "running statistics"),
        (_Call(lambda x: F.max_pool1d(x, 3, ceil_mode=True)), (2, 8), "MaxPool1d with ceil_mode"),
        (_Call(lambda x: F.pad(x, (1, 1), mode="reflect")), (2, 8), "only zero padding"),
        (_Call(lambda x: F.pad(x, (1, 1), value=2.0)), (2, 8), "value=2.0"),
        (_Call(lambda x: x.mean(1)), (2, 8), r"global average pooling\): mean over dim=1"),
        (_Call(lambda x: x.squeeze(0)), (1, 8), "not a flatten keeping the batch"),
        (_Call(lambda x: x[:, :1]), (2, 8), "function getitem"),
    ],
)
def test_unsupported_constructs_name_the_module_and_node(model: nn.Module, shape: tuple[int, ...],
                                                         message: str) -> None:
    with pytest.raises(GraphError, match=message):
        from_torch(model, shape)


def test_untraceable_model_and_wrong_input_shape_are_reported() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(GraphError, match="Branchy: torch.fx cannot trace"):
        from_torch(Branchy(), (3,))
    with pytest.raises(GraphError, match=r"inputs of shape \(5,\) failed"):
        from_torch(nn.Linear(3, 2), (5,))


def test_float_graph_save_load_round_trip(tmp_path) -> None:
    torch.manual_seed(3)
    model = ResNetLike(1, 3)
    _randomize_batchnorm(model, 3)
    g = from_torch(model, (3, 32))
    g.save(tmp_path / "model")
    back = Graph.load(tmp_path / "model.json")
    assert [(n.name, n.op, n.inputs, n.attrs, n.shape) for n in back.nodes] == \
        [(n.name, n.op, n.inputs, n.attrs, n.shape) for n in g.nodes]
    assert back.metadata == g.metadata
    x = np.random.default_rng(0).normal(size=(5, 3, 32)).astype(np.float32)
    np.testing.assert_array_equal(R.run(back, x), R.run(g, x))


@settings(max_examples=30, deadline=None)
@given(
    dims=st.sampled_from([1, 2]),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    pool=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pool_stride=st.integers(1, 3),
    is_max=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_conv_and_pool_geometry_matches_pytorch(dims, kernel, stride, padding, pool, pool_stride, is_max,
                                                seed) -> None:
    torch.manual_seed(seed)
    if dims == 1:
        conv = nn.Conv1d(2, 3, kernel[0], stride=stride[0], padding=padding[0])
        pooling = (nn.MaxPool1d if is_max else nn.AvgPool1d)(pool[0], stride=pool_stride)
        shape: tuple[int, ...] = (2, 13)
    else:
        conv = nn.Conv2d(2, 3, kernel, stride=stride, padding=padding)
        pooling = (nn.MaxPool2d if is_max else nn.AvgPool2d)(pool, stride=pool_stride)
        shape = (2, 11, 9)
    model = nn.Sequential(conv, pooling)
    conv_out = [(n + 2 * p - k) // s + 1
                for n, k, s, p in zip(shape[1:], kernel[:dims], stride[:dims], padding[:dims], strict=True)]
    if min((n - k) // pool_stride + 1 for n, k in zip(conv_out, pool[:dims], strict=True)) < 1:
        with pytest.raises(GraphError, match=r"Sequential: running the traced model on inputs of shape"):
            from_torch(model, shape)
        return
    g = from_torch(model, shape)
    x = np.random.default_rng(seed).normal(size=(3, *shape)).astype(np.float32)
    assert np.abs(R.run(g, x) - _torch_out(model, x)).max() < 1e-5


def test_pytorch_s_own_message_is_kept_for_a_wrong_shape_or_two_inputs() -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.linear(x) + self.linear(y)

    conv = nn.Sequential(nn.Conv1d(9, 4, 3))
    with pytest.raises(GraphError, match=r"at fx node '_0' \(call_module 0\).*expected input\[2, 3, 16\] "
                                         r"to have 9 channels, but got 3 channels"):
        from_torch(conv, (3, 16))
    with pytest.raises(GraphError, match=r"the model takes 2 inputs: x, y\): RuntimeError: "
                                         r"Expected positional argument for parameter y"):
        from_torch(TwoInputs(), (4,))
