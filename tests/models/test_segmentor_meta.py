"""A segmentor's training forward runs on the meta device (shapes only, e.g. to size a model before allocating
it): the loss op does not read labels it cannot have (it called .item() on meta tensors). Mask-classification
models match predictions to targets by value (Hungarian matching), which needs real labels: not covered."""
import torch

import semask_models as sm


def test_fpn_segmentor_training_forward_on_meta():
    with torch.device("meta"):
        model = sm.build_model("semask_swin_t_fpn", num_classes=5, embed_dim=16, depths=(2, 2, 2, 2),
                               num_heads=(1, 2, 2, 4), head_channels=16).train()
    img = torch.randn(2, 3, 64, 64, device="meta")
    target = torch.randint(0, 5, (2, 64, 64), device="meta")
    losses = model(img, target)
    assert losses and all(v.device.type == "meta" and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.device.type == "meta" for g in grads)
