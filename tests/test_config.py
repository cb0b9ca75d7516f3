"""Configuration: presets, ActionFormer YAML files, strict validation."""

import pytest

from asl_edge.config import ConfigError, config_from_dict, config_to_dict, load_config, preset_names, save_config

# An ActionFormer-style file, in its own layout: flow mappings, "~" for null, no ASL keys.
ACTIONFORMER_YAML = """
dataset_name: thumos
train_split: ['validation']
val_split: ['test']
dataset: {
  json_file: ./data/thumos/annotations/thumos14.json,
  feat_folder: ./data/thumos/i3d_features,
  file_prefix: ~,
  file_ext: .npy,
  num_classes: 20,
  input_dim: 2048,
  feat_stride: 4,
  num_frames: 16,
  # serve as data augmentation
  trunc_thresh: 0.5,
  crop_ratio: [0.9, 1.0],
  max_seq_len: 2304,
}
model: {
  fpn_type: identity,
  max_buffer_len_factor: 6.0,
  n_mha_win_size: 19,
}
opt: {
  learning_rate: 0.0001,
  epochs: 30,
  weight_decay: 0.05,
}
loader: {
  batch_size: 2,
}
train_cfg: {
  init_loss_norm: 100,
  clip_grad_l2norm: 1.0,
}
test_cfg: {
  voting_thresh: 0.7,
  pre_nms_topk: 2000,
  max_seg_num: 200,
  min_score: 0.001,
  multiclass_nms: True,
}
output_folder: ./ckpt/
"""


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_presets():
    assert {"thumos_i3d", "anet_tsp"} <= set(preset_names())
    thumos = load_config()
    assert thumos.dataset.input_dim == 2048 and thumos.dataset.feat_stride == 4
    assert thumos.model.n_mha_win_size == 19 and thumos.model.tca.theta == 0.2 and thumos.model.tca.levels == [0]
    assert len(thumos.dataset.class_names) == 20
    anet = load_config("anet_tsp")
    assert anet.model.n_mha_win_size == [7, 7, 7, 7, 7, -1] and anet.dataset.force_upsampling
    assert anet.test_cfg.multiclass_nms is False


def test_actionformer_yaml_merges_onto_actionformer_defaults(tmp_path):
    config = load_config(write(tmp_path, ACTIONFORMER_YAML))
    # from the file
    assert config.dataset.file_prefix is None and config.dataset.crop_ratio == [0.9, 1.0]
    assert config.opt.learning_rate == 0.0001 and config.train_cfg.init_loss_norm == 100
    # ActionFormer's defaults for everything the file leaves out
    assert config.model.n_head == 4 and config.model.backbone_arch == [2, 2, 5]
    assert config.test_cfg.nms_sigma == 0.5 and config.test_cfg.nms_method == "soft"
    assert config.train_cfg.droppath == 0.1 and config.train_cfg.center_sample_radius == 1.5
    assert config.dataset.downsample_rate == 1 and config.loader.num_workers == 4
    # the THUMOS preset is the same setting plus class names
    preset = load_config("thumos_i3d")
    preset.dataset.class_names = None
    assert config == preset


def test_unknown_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"'model.n_mha_win_sz'.*allowed in model: .*n_mha_win_size"):
        load_config(write(tmp_path, "model: {n_mha_win_sz: 19}"))
    with pytest.raises(ConfigError, match=r"'model.tca.thta'"):
        load_config(write(tmp_path, "model: {tca: {thta: 0.3}}"))
    with pytest.raises(ConfigError, match=r"'epochz'.*top level"):
        load_config(write(tmp_path, "epochz: 3"))


@pytest.mark.parametrize("text,key", [
    ("model: {n_head: four}", r"model.n_head: expected int, got str 'four'"),
    ("model: {n_head: 4.5}", r"model.n_head: expected int"),
    ("model: {regression_range: [[0, 4], [4, x]]}", r"model.regression_range\[1\]\[1\]: expected float"),
    ("test_cfg: {nms_method: fuzzy}", r"test_cfg.nms_method: expected one of 'soft', 'hard', 'none'"),
    ("model: {use_abs_pe: 1}", r"model.use_abs_pe: expected bool"),
    ("model: {n_mha_win_size: [7, seven]}", r"model.n_mha_win_size: expected int or list of int"),
    ("dataset: 5", r"dataset: expected a mapping"),
])
def test_wrong_types_are_named(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path, text))


def test_exponent_strings_are_floats(tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string
    assert load_config(write(tmp_path, "opt: {learning_rate: 1e-4}")).opt.learning_rate == 1e-4


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="neither a file nor a preset.*thumos_i3d"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: {n_head: [4"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_overrides_and_round_trip(tmp_path):
    config = load_config("anet_tsp", overrides={"model": {"tca": {"theta": 0.5, "channel_scale": "head"}}})
    assert config.model.tca.theta == 0.5 and config.model.tca.channel_scale == "head"
    assert config.model.embd_dim == 256
    assert config_from_dict(config_to_dict(config)) == config
    path = tmp_path / "saved.yaml"
    save_config(config, path)
    assert load_config(path) == config
