"""Building a run: the network, the head (MDS-placed representatives for ``--mds_W``) and the optimisers."""
from dataclasses import dataclass
from typing import Optional

import torch
from tqdm import tqdm

from losses.head import ClassHead
from losses.mds import MDS_STEPS, fit_mds
from models.embedding import EmbeddingNet
from utils.training.config import RunConfig
from utils.training.passes import class_prior, seed_everything
from utils.training.speed import compile_model


@dataclass
class RunParts:
    """What trains: the network (``step_model`` is the one a training step calls: compiled with
    ``--compile``, checkpoints always hold ``model``), the head and their optimisers."""

    model: torch.nn.Module
    step_model: torch.nn.Module
    head: ClassHead
    optimizer: torch.optim.Optimizer
    scale_optimizer: Optional[torch.optim.Optimizer]
    initial_W: torch.Tensor  # the representatives at initialisation (for w_init_cos)
    mds_stress: tuple  # (initial, final) stress of the MDS placement, or (None, None)


def build_parts(config: RunConfig, data, device: torch.device, log) -> RunParts:
    """The network and head, initialised from the seed alone (not from data loading), and Adam for both
    (a second Adam on ``log s`` for ``--dynamic``)."""
    C = data.hierarchy.n_classes
    seed_everything(config.seed)
    model = EmbeddingNet(config.backbone, data.in_channels, pretrained=not config.rand_backbone,
                         size_inform=config.size_inform, image_size=data.image_size).to(device)
    fixed_W, stress = None, (None, None)
    if config.mds_W:
        target = data.hierarchy.transformed_distances(config.distance, config.beta)
        g = torch.Generator().manual_seed(config.seed)
        with tqdm(total=MDS_STEPS, desc=f"MDS placement ({C} classes)", unit="step", leave=False, disable=None) as bar:
            fixed_W, *stress = fit_mds(target, model.head.out_features, config.distance, generator=g, device=device,
                                       progress=lambda done, total: bar.update(done - bar.n))
        log.info(f"MDS representatives: stress {stress[0]:.4f} -> {stress[1]:.4f}")
    prior = class_prior(data.train_labels, C) if config.clspri else None
    head = ClassHead(C, model.head.out_features, method=config.method, distance=config.distance,
                     dynamic=config.dynamic, scale_update=config.scale_update, ema=config.ema, alpha=config.alpha,
                     corr=config.CORR, fixed_W=fixed_W, class_prior=prior,
                     generator=torch.Generator().manual_seed(config.seed + 1)).to(device)
    if head.initial_scale is not None:
        log.info(f"initial scale s = {head.initial_scale:.4f}" + (" (dynamic)" if config.dynamic else ""))
        if config.dynamic and not head.initial_scale_is_root:
            log.info(f"notice: with {C} classes the initial-scale equation of {config.method}-{config.distance} "
                     f"has no positive root; starting from the scale with the smallest residual")
    optimizer = torch.optim.Adam(list(model.parameters()) + head.main_parameters(), lr=config.lr)
    scale_optimizer = torch.optim.Adam([head.log_s], lr=config.lr) if config.dynamic else None
    step_model = compile_model(model, device) if config.compile else model
    return RunParts(model, step_model, head, optimizer, scale_optimizer, head.representatives().clone(),
                    tuple(stress))
