import pytest
import torch

from nextmm.parts.projectors import InputProjector, OutputProjector


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_input_projector_gives_one_token_per_medium(kind):
    projector = InputProjector(16, 8, kind)
    assert projector(torch.randn(3, 16)).shape == (3, 1, 8)


def test_input_projector_rejects_unknown_kind():
    with pytest.raises(ValueError, match="'linear' or 'mlp'"):
        InputProjector(16, 8, "conv")


@pytest.mark.parametrize("shape", [(77, 12), (12,)])
def test_output_projector_shapes(shape):
    torch.manual_seed(0)
    projector = OutputProjector(24, shape, width=16, heads=2, encoder_layers=1, decoder_layers=1, feedforward=32)
    out = projector(torch.randn(2, 4, 24), torch.randn(2, 4, 24))
    assert out.shape == (2, *shape)
    out.sum().backward()
    assert projector.queries.grad is not None and projector.fc.weight.grad.abs().sum() > 0


def _transformer_params(width=512, ff=2048, enc=4, dec=4):
    attention = 4 * width * width + 4 * width
    feedforward = 2 * width * ff + ff + width
    encoder_layer = attention + feedforward + 2 * 2 * width
    decoder_layer = 2 * attention + feedforward + 3 * 2 * width
    return enc * encoder_layer + dec * decoder_layer + 2 * 2 * width  # + final encoder and decoder norms


@pytest.mark.parametrize(
    "shape, queries", [((77, 768), 77), ((512,), 1), ((77, 1024), 77)], ids=["image", "audio", "video"]
)
def test_full_size_output_projector_matches_the_architecture(shape, queries):
    with torch.device("meta"):
        projector = OutputProjector(4096, shape)
    expected = (4096 * 512 + 512) + _transformer_params() + queries * 512 + (512 * shape[-1] + shape[-1])
    assert sum(p.numel() for p in projector.parameters()) == expected
