"""The trial benchmarks write what they wrote before their knobs left the library: the hashes below were
recorded on 2026-12-08 with ``make_synthetic_benchmark(..., shift_scale=..., class_pattern=..., random_look=...)``
(the commit that pinned them, before the move); each variant is now a :class:`TrialAppearance`. See
tests/test_synthetic_fixture.py for the hashes and why the file hashes are tied to the encoders' versions."""

import cv2
import PIL
import pytest

from experiments.trial_benchmark import TrialAppearance, make_trial_benchmark
from tests.test_synthetic_fixture import RECORDED_WITH, SMALL, array_hash, tree_hash

VARIANTS = {  # name: (options, file hash, array hash)
    "shift_scale=2": ({"shift_scale": 2.0}, "a6bd8e9c1d21cab289194f59e9df42ea376732a986a7b621a20f2d9df64e845a",
                      "9dca48547c6dccb826fa627de7f43f1cc321ab855c3ff7c37d45bcc13934c257"),
    "shift_scale=0.5,texture_shift=0": ({"shift_scale": 0.5, "texture_shift": 0.0},
                                        "ca36a0a12b5e7f6a43873f174d2cbe571ca518ea6fb4cb054c7a8c5fe8976ac2",
                                        "c8c0d0153fe7a83e76f998876aba43ea0dd5aabf23e1f6eca489f5c5a5dcda20"),
    "texture_shift=1.7": ({"texture_shift": 1.7}, "389e65a566b106270b8e4cf9f86416b302852a9baab20d5d235818e9c5bd985c",
                          "0652d14fce349ec55d358430d4ec0cd3a4f4c10ee23495203bd5a79723b41f50"),
    "class_colour_spread=25": ({"class_colour_spread": 25.0}, "aa1321aa46cf4616da6a2f9fb3107134a578a18664bb92e276bd0ed5a4feb009",
                               "c62e26e484f7e81adccfb15c5f9bde0925abdeb04d27738b3ec81fa9ed80c9d2"),
    "class_pattern=25": ({"class_pattern": 25.0}, "659aa13c3862001353e2ef94afc12637ae24519df1e788261923d88e6f85fc4c",
                         "848ea37a5a2d1b6545b2785c19d0076cc8c9c9641958ec376508be00ccef14ef"),
    "spread=30,pattern=20,shift=1.3": ({"class_colour_spread": 30.0, "class_pattern": 20.0, "shift_scale": 1.3},
                                       "5e3933bfe51954cbb9f28fa76acc8f56d11b164a2641c938d16027d1d81ee603",
                                       "224e0471351b335204430261eacc59556e996fd3f0ae1567236a38ecacfe175b"),
    "generic,class_pattern=25": ({"random_look": True, "class_pattern": 25.0},
                                 "fac94efb708f8ef5be233d2e1345625247ac842d94f8fcc1d20c4da26041fcbd",
                                 "3b54f05721654cc7d25502f3be85546c0e94824c87a891dde1af100b79e92d1f"),
    "generic,spread=25": ({"random_look": True, "class_colour_spread": 25.0},
                          "5526df8935eb888ec57333112ee4cb766deb9b6a135f7cbf678ee6fcd5f6f2f7",
                          "b9bd2f415387fad97cb9421aafb01114a27ba897dfb1162259bf2ca15aa47213"),
}  # fmt: skip


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_draws_what_it_drew(name):
    options, _, arrays = dict(VARIANTS[name][0]), *VARIANTS[name][1:]
    generic = options.pop("random_look", False)
    assert array_hash(appearance=TrialAppearance(generic, **options)) == arrays


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_writes_what_it_wrote(tmp_path, name):
    versions = {"PIL": PIL.__version__, "cv2": cv2.__version__}
    if versions != RECORDED_WITH:
        pytest.skip(f"the file hashes were recorded with {RECORDED_WITH}, this is {versions}")
    options, files, _ = VARIANTS[name]
    make_trial_benchmark(tmp_path / "b", **SMALL, **options)
    assert tree_hash(tmp_path / "b") == files


def test_the_marker_records_what_it_recorded(tmp_path):
    make_trial_benchmark(tmp_path / "b", **SMALL, random_look=True, class_pattern=25, class_colour_spread=3)
    marker = (tmp_path / "b" / ".srha_synthetic.json").read_text()
    assert marker.endswith('"gtav_layout": "presplit", "class_colour_spread": 3.0, "class_pattern": 25.0, "random_look": true}')


def test_a_look_at_its_defaults_is_the_shipped_benchmark():
    assert TrialAppearance().marker() == {} and array_hash(appearance=TrialAppearance()) == array_hash()
