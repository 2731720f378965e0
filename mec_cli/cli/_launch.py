"""The options `mec train` and `mec eval --checkpoint` share, defined once (as sqlite-utils defines its shared
options); their defaults are the launch layer's (:class:`mec_cli.launch.LaunchOptions`).

Options whose default differs between the two commands (``--gpus``, ``--master-port``) are declared by each
command, with the default of its own options class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import typer

from mec_cli.launch import LaunchOptions

RECIPE = typer.Option(LaunchOptions.recipe, "--recipe", "-r", help="Recipe short name (see `mec recipes`).")
CONFIG = typer.Option(LaunchOptions.config, "--config", help="An MMDetection config file instead of a recipe.")
DATASET = typer.Option(LaunchOptions.dataset, "--dataset",
                       help="Dataset part of the recipe: lvis_v1 (the LVIS recipes' default), coco_lt or synth.")
DATA_ROOT = typer.Option(LaunchOptions.data_root, "--data-root", help="Dataset root folder.")
GROUPS = typer.Option(LaunchOptions.groups, "--groups",
                      help="groups.json (default: computed from the training annotations with the recipe's bins; "
                           "`mec eval` first looks beside the checkpoint).")
PROCS = typer.Option(LaunchOptions.procs, "--procs", help="CPU processes when --gpus 0 (>1 runs torchrun with gloo).")


def launch_fields(recipe: Optional[str], config: Optional[Path], dataset: Optional[str], data_root: Optional[str],
                  groups: Optional[Path], procs: int) -> Dict:
    """The shared options as :class:`~mec_cli.launch.LaunchOptions` fields."""
    return dict(recipe=recipe, config=str(config) if config else None, dataset=dataset, data_root=data_root,
                groups=str(groups) if groups else None, procs=procs)
