"""SRHAConfig describes itself: explicit arguments with their defaults documented, an unknown key refused
naming the closest valid one, and a config.json written before the arguments were explicit still loads."""

import json
import re
from pathlib import Path

import pytest
from transformers import AutoConfig

from srha_hf import SRHAConfig
from srha_hf.configuration_srha import DEFAULTS

FIXTURE = Path(__file__).parent / "fixtures" / "config_0.1.0"  # written by srha_hf 0.1.0 (DEFAULTS-dict SRHAConfig)


def test_a_typo_is_refused_naming_the_key_meant():
    with pytest.raises(ValueError, match=r"unknown key 'pc_wieght'; did you mean 'pc_weight'\?"):
        SRHAConfig(pc_wieght=5.0)
    with pytest.raises(ValueError, match=r"unknown key 'backbone_pretraind'; did you mean 'backbone_pretrained'\?"):
        SRHAConfig(backbone_pretraind="imagenet")
    with pytest.raises(ValueError, match=r"unknown key 'zzz'; SRHAConfig takes backbone, decode_head"):
        SRHAConfig(zzz=1)
    with pytest.raises(ValueError, match="did you mean 'srm_concentration'"):
        AutoConfig.for_model("srha", srm_concentraton=0.5)


def test_every_argument_is_documented_with_its_default():
    doc = SRHAConfig.__doc__
    for name in DEFAULTS:
        assert re.search(rf"\b{name}\b", doc), f"{name} is not documented in SRHAConfig's Args"
    config = SRHAConfig()
    assert (config.pc_weight, config.srm_concentration, config.ga_weights, config.teacher_mode) == (10.0, 0.0156, [0.4, 0.6, 0.8, 1.0], "faithful")
    assert all(getattr(config, name) == (list(v) if isinstance(v, tuple) else v) for name, v in DEFAULTS.items())


def test_a_config_json_written_before_explicit_arguments_loads():
    saved = json.loads((FIXTURE / "config.json").read_text())
    config = SRHAConfig.from_pretrained(FIXTURE)
    assert (config.backbone, config.pc_weight, config.aspp_rates, config.num_labels) == ("mobilenetv2", 5.0, [3, 6, 9], 19)
    assert config.id2label[0] == "road"
    again = config.to_dict()
    for key, value in saved.items():
        if key not in ("transformers_version", "id2label"):
            assert again[key] == value, key
    assert AutoConfig.from_pretrained(FIXTURE).backbone == "mobilenetv2"


def test_recipes_inherit_from_a_base(tmp_path):
    from srha_hf.training import ConfigError, load_config

    (tmp_path / "_base_").mkdir()
    (tmp_path / "_base_" / "root.yaml").write_text("lr: 0.02\nmax_iter: 100\nmodel_kwargs: {pc_weight: 5.0, srm: false}\n")
    (tmp_path / "_base_" / "mid.yaml").write_text("_base_: root.yaml\nmax_iter: 200\nbackbone: shufflenetv2\n")
    (tmp_path / "leaf.yaml").write_text("_base_: _base_/mid.yaml\nbatch_size: 2\nmodel_kwargs: {srm: true}\n")
    config = load_config(tmp_path / "leaf.yaml", {"lr": 0.03})
    assert (config.lr, config.max_iter, config.backbone, config.batch_size) == (0.03, 200, "shufflenetv2", 2)
    assert config.model_kwargs == {"pc_weight": 5.0, "srm": True}  # merged key by key, the recipe's own last
    (tmp_path / "loop_a.yaml").write_text("_base_: loop_b.yaml\n")
    (tmp_path / "loop_b.yaml").write_text("_base_: loop_a.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config(tmp_path / "loop_a.yaml")
    (tmp_path / "orphan.yaml").write_text("_base_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere.yaml does not exist \(the _base_ of .*orphan.yaml\)"):
        load_config(tmp_path / "orphan.yaml")
    (tmp_path / "_base_" / "typo.yaml").write_text("lrr: 0.1\n")
    (tmp_path / "child.yaml").write_text("_base_: _base_/typo.yaml\n")
    with pytest.raises(ConfigError, match=r"unknown key 'lrr' in .*typo.yaml"):
        load_config(tmp_path / "child.yaml")


def test_per_backbone_recipes_are_a_few_lines_over_the_gtav_base():
    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("r50_gtav", "r101_gtav", "mobilenetv2_gtav", "shufflenetv2_gtav"):
        keys = [line for line in (root / f"{name}.yaml").read_text().splitlines() if line and not line.startswith("#")]
        assert keys[0] == "_base_: _base_/gtav.yaml" and len(keys) <= 6, name
