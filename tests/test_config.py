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
