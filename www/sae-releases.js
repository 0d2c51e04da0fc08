// The GPT-2 small SAE releases of SAELens's pretrained_saes.yaml (sae-lens 6.54.12):
// each release's Hugging Face repo, and each SAE's id, folder in that repo
// (path), TransformerLens hook and Neuronpedia id, exactly as the yaml says
// (config_overrides too: SAELens applies them to cfg.json on load, and so does
// PatchLab.loadSaeFromHub). `loadable`: the folder holds cfg.json +
// sae_weights.safetensors (SAELens's own loader, no conversion) of an SAE
// patchlab encodes as SAELens does (standard, jumprelu or topk; no run-time
// normalisation); otherwise `reason` says why it cannot be loaded, for the page
// to show when it is picked. The engine checks every SAE again when it loads
// (src/model/sae.rs) and refuses one that does not fit with its own message.
// `normScalingFactor`: the yaml's norm_scaling_factor of an SAE whose
// normalize_activations is "expected_average_only_in" (gpt2-small-mlp-tm),
// which the engine folds in as SAE.from_pretrained does.
// Regenerate from a newer yaml by reading it the same way (release → repo_id,
// config_overrides, conversion_func; saes[] → id, path, neuronpedia,
// norm_scaling_factor).

export const SAE_RELEASES = [
  {
    release: "gpt2-small-attn-out-v5-128k",
    repo: "jbloom/GPT2-Small-OAI-v5-128k-attn-out-SAEs",
    configOverrides: {"dataset_path": "Skylion007/openwebtext"},
    loadable: false,
    reason: "OpenAI's v5 SAEs layer-normalise every activation vector before encoding it (normalize_activations \"layer_norm\"), which patchlab's encoder does not do",
    saes: [
      { "id": "blocks.0.hook_attn_out", "path": "v5_128k_layer_0", "hook": "blocks.0.hook_attn_out", "neuronpedia": "gpt2-small/0-att_128k-oai" },
      { "id": "blocks.1.hook_attn_out", "path": "v5_128k_layer_1", "hook": "blocks.1.hook_attn_out", "neuronpedia": "gpt2-small/1-att_128k-oai" },
      { "id": "blocks.2.hook_attn_out", "path": "v5_128k_layer_2", "hook": "blocks.2.hook_attn_out", "neuronpedia": "gpt2-small/2-att_128k-oai" },
      { "id": "blocks.3.hook_attn_out", "path": "v5_128k_layer_3", "hook": "blocks.3.hook_attn_out", "neuronpedia": "gpt2-small/3-att_128k-oai" },
      { "id": "blocks.4.hook_attn_out", "path": "v5_128k_layer_4", "hook": "blocks.4.hook_attn_out", "neuronpedia": "gpt2-small/4-att_128k-oai" },
      { "id": "blocks.5.hook_attn_out", "path": "v5_128k_layer_5", "hook": "blocks.5.hook_attn_out", "neuronpedia": "gpt2-small/5-att_128k-oai" },
      { "id": "blocks.6.hook_attn_out", "path": "v5_128k_layer_6", "hook": "blocks.6.hook_attn_out", "neuronpedia": "gpt2-small/6-att_128k-oai" },
      { "id": "blocks.7.hook_attn_out", "path": "v5_128k_layer_7", "hook": "blocks.7.hook_attn_out", "neuronpedia": "gpt2-small/7-att_128k-oai" },
      { "id": "blocks.8.hook_attn_out", "path": "v5_128k_layer_8", "hook": "blocks.8.hook_attn_out", "neuronpedia": "gpt2-small/8-att_128k-oai" },
      { "id": "blocks.9.hook_attn_out", "path": "v5_128k_layer_9", "hook": "blocks.9.hook_attn_out", "neuronpedia": "gpt2-small/9-att_128k-oai" },
      { "id": "blocks.10.hook_attn_out", "path": "v5_128k_layer_10", "hook": "blocks.10.hook_attn_out", "neuronpedia": "gpt2-small/10-att_128k-oai" },
      { "id": "blocks.11.hook_attn_out", "path": "v5_128k_layer_11", "hook": "blocks.11.hook_attn_out", "neuronpedia": "gpt2-small/11-att_128k-oai" },
    ],
  },
  {
    release: "gpt2-small-attn-out-v5-32k",
    repo: "jbloom/GPT2-Small-OAI-v5-32k-attn-out-SAEs",
    configOverrides: {"dataset_path": "Skylion007/openwebtext"},
    loadable: false,
    reason: "OpenAI's v5 SAEs layer-normalise every activation vector before encoding it (normalize_activations \"layer_norm\"), which patchlab's encoder does not do",
    saes: [
      { "id": "blocks.0.hook_attn_out", "path": "v5_32k_layer_0", "hook": "blocks.0.hook_attn_out", "neuronpedia": "gpt2-small/0-att_32k-oai" },
      { "id": "blocks.1.hook_attn_out", "path": "v5_32k_layer_1", "hook": "blocks.1.hook_attn_out", "neuronpedia": "gpt2-small/1-att_32k-oai" },
      { "id": "blocks.2.hook_attn_out", "path": "v5_32k_layer_2", "hook": "blocks.2.hook_attn_out", "neuronpedia": "gpt2-small/2-att_32k-oai" },
      { "id": "blocks.3.hook_attn_out", "path": "v5_32k_layer_3", "hook": "blocks.3.hook_attn_out", "neuronpedia": "gpt2-small/3-att_32k-oai" },
      { "id": "blocks.4.hook_attn_out", "path": "v5_32k_layer_4", "hook": "blocks.4.hook_attn_out", "neuronpedia": "gpt2-small/4-att_32k-oai" },
      { "id": "blocks.5.hook_attn_out", "path": "v5_32k_layer_5", "hook": "blocks.5.hook_attn_out", "neuronpedia": "gpt2-small/5-att_32k-oai" },
      { "id": "blocks.6.hook_attn_out", "path": "v5_32k_layer_6", "hook": "blocks.6.hook_attn_out", "neuronpedia": "gpt2-small/6-att_32k-oai" },
      { "id": "blocks.7.hook_attn_out", "path": "v5_32k_layer_7", "hook": "blocks.7.hook_attn_out", "neuronpedia": "gpt2-small/7-att_32k-oai" },
      { "id": "blocks.8.hook_attn_out", "path": "v5_32k_layer_8", "hook": "blocks.8.hook_attn_out", "neuronpedia": "gpt2-small/8-att_32k-oai" },
      { "id": "blocks.9.hook_attn_out", "path": "v5_32k_layer_9", "hook": "blocks.9.hook_attn_out", "neuronpedia": "gpt2-small/9-att_32k-oai" },
      { "id": "blocks.10.hook_attn_out", "path": "v5_32k_layer_10", "hook": "blocks.10.hook_attn_out", "neuronpedia": "gpt2-small/10-att_32k-oai" },
      { "id": "blocks.11.hook_attn_out", "path": "v5_32k_layer_11", "hook": "blocks.11.hook_attn_out", "neuronpedia": "gpt2-small/11-att_32k-oai" },
    ],
  },
  {
    release: "gpt2-small-hook-z-kk",
    repo: "ckkissane/attn-saes-gpt2-small-all-layers",
    loadable: false,
    reason: "its SAEs are PyTorch .pt checkpoints with their own config files, which SAELens converts on load (conversion_func connor_rob_hook_z); patchlab reads SAELens's cfg.json + sae_weights.safetensors only. Convert one with SAELens (SAE.from_pretrained(\"gpt2-small-hook-z-kk\", id).save_model(DIR)) and open DIR's cfg.json and sae_weights.safetensors",
    saes: [
      { "id": "blocks.0.hook_z", "path": "gpt2-small_L0_Hcat_z_lr1.20e-03_l11.80e+00_ds24576_bs4096_dc1.00e-06_rsanthropic_rie25000_nr4_v9.pt", "hook": "blocks.0.attn.hook_z", "neuronpedia": "gpt2-small/0-att-kk" },
      { "id": "blocks.1.hook_z", "path": "gpt2-small_L1_Hcat_z_lr1.20e-03_l18.00e-01_ds24576_bs4096_dc1.00e-06_rsanthropic_rie25000_nr4_v5.pt", "hook": "blocks.1.attn.hook_z", "neuronpedia": "gpt2-small/1-att-kk" },
      { "id": "blocks.2.hook_z", "path": "gpt2-small_L2_Hcat_z_lr1.20e-03_l11.00e+00_ds24576_bs4096_dc1.00e-06_rsanthropic_rie25000_nr4_v4.pt", "hook": "blocks.2.attn.hook_z", "neuronpedia": "gpt2-small/2-att-kk" },
      { "id": "blocks.3.hook_z", "path": "gpt2-small_L3_Hcat_z_lr1.20e-03_l19.00e-01_ds24576_bs4096_dc1.00e-06_rsanthropic_rie25000_nr4_v9.pt", "hook": "blocks.3.attn.hook_z", "neuronpedia": "gpt2-small/3-att-kk" },
      { "id": "blocks.4.hook_z", "path": "gpt2-small_L4_Hcat_z_lr1.20e-03_l11.10e+00_ds24576_bs4096_dc1.00e-06_rsanthropic_rie25000_nr4_v7.pt", "hook": "blocks.4.attn.hook_z", "neuronpedia": "gpt2-small/4-att-kk" },
      { "id": "blocks.5.hook_z", "path": "gpt2-small_L5_Hcat_z_lr1.20e-03_l11.00e+00_ds49152_bs4096_dc1.00e-06_rsanthropic_rie25000_nr4_v9.pt", "hook": "blocks.5.attn.hook_z", "neuronpedia": "gpt2-small/5-att-kk" },
      { "id": "blocks.6.hook_z", "path": "gpt2-small_L6_Hcat_z_lr1.20e-03_l11.10e+00_ds24576_bs4096_dc1.00e-06_rsanthropic_rie25000_nr4_v9.pt", "hook": "blocks.6.attn.hook_z", "neuronpedia": "gpt2-small/6-att-kk" },
      { "id": "blocks.7.hook_z", "path": "gpt2-small_L7_Hcat_z_lr1.20e-03_l11.10e+00_ds49152_bs4096_dc1.00e-06_rsanthropic_rie25000_nr4_v9.pt", "hook": "blocks.7.attn.hook_z", "neuronpedia": "gpt2-small/7-att-kk" },
      { "id": "blocks.8.hook_z", "path": "gpt2-small_L8_Hcat_z_lr1.20e-03_l11.30e+00_ds24576_bs4096_dc1.00e-05_rsanthropic_rie25000_nr4_v6.pt", "hook": "blocks.8.attn.hook_z", "neuronpedia": "gpt2-small/8-att-kk" },
      { "id": "blocks.9.hook_z", "path": "gpt2-small_L9_Hcat_z_lr1.20e-03_l11.20e+00_ds24576_bs4096_dc1.00e-06_rsanthropic_rie25000_nr4_v9.pt", "hook": "blocks.9.attn.hook_z", "neuronpedia": "gpt2-small/9-att-kk" },
      { "id": "blocks.10.hook_z", "path": "gpt2-small_L10_Hcat_z_lr1.20e-03_l11.30e+00_ds24576_bs4096_dc1.00e-05_rsanthropic_rie25000_nr4_v9.pt", "hook": "blocks.10.attn.hook_z", "neuronpedia": "gpt2-small/10-att-kk" },
      { "id": "blocks.11.hook_z", "path": "gpt2-small_L11_Hcat_z_lr1.20e-03_l13.00e+00_ds24576_bs4096_dc3.16e-06_rsanthropic_rie25000_nr4_v9.pt", "hook": "blocks.11.attn.hook_z", "neuronpedia": "gpt2-small/11-att-kk" },
    ],
  },
  {
    release: "gpt2-small-mlp-out-v5-128k",
    repo: "jbloom/GPT2-Small-OAI-v5-128k-mlp-out-SAEs",
    configOverrides: {"dataset_path": "Skylion007/openwebtext"},
    loadable: false,
    reason: "OpenAI's v5 SAEs layer-normalise every activation vector before encoding it (normalize_activations \"layer_norm\"), which patchlab's encoder does not do",
    saes: [
      { "id": "blocks.0.hook_mlp_out", "path": "v5_128k_layer_0", "hook": "blocks.0.hook_mlp_out", "neuronpedia": "gpt2-small/0-mlp_128k-oai" },
      { "id": "blocks.1.hook_mlp_out", "path": "v5_128k_layer_1", "hook": "blocks.1.hook_mlp_out", "neuronpedia": "gpt2-small/1-mlp_128k-oai" },
      { "id": "blocks.2.hook_mlp_out", "path": "v5_128k_layer_2", "hook": "blocks.2.hook_mlp_out", "neuronpedia": "gpt2-small/2-mlp_128k-oai" },
      { "id": "blocks.3.hook_mlp_out", "path": "v5_128k_layer_3", "hook": "blocks.3.hook_mlp_out", "neuronpedia": "gpt2-small/3-mlp_128k-oai" },
      { "id": "blocks.4.hook_mlp_out", "path": "v5_128k_layer_4", "hook": "blocks.4.hook_mlp_out", "neuronpedia": "gpt2-small/4-mlp_128k-oai" },
      { "id": "blocks.5.hook_mlp_out", "path": "v5_128k_layer_5", "hook": "blocks.5.hook_mlp_out", "neuronpedia": "gpt2-small/5-mlp_128k-oai" },
      { "id": "blocks.6.hook_mlp_out", "path": "v5_128k_layer_6", "hook": "blocks.6.hook_mlp_out", "neuronpedia": "gpt2-small/6-mlp_128k-oai" },
      { "id": "blocks.7.hook_mlp_out", "path": "v5_128k_layer_7", "hook": "blocks.7.hook_mlp_out", "neuronpedia": "gpt2-small/7-mlp_128k-oai" },
      { "id": "blocks.8.hook_mlp_out", "path": "v5_128k_layer_8", "hook": "blocks.8.hook_mlp_out", "neuronpedia": "gpt2-small/8-mlp_128k-oai" },
      { "id": "blocks.9.hook_mlp_out", "path": "v5_128k_layer_9", "hook": "blocks.9.hook_mlp_out", "neuronpedia": "gpt2-small/9-mlp_128k-oai" },
      { "id": "blocks.10.hook_mlp_out", "path": "v5_128k_layer_10", "hook": "blocks.10.hook_mlp_out", "neuronpedia": "gpt2-small/10-mlp_128k-oai" },
      { "id": "blocks.11.hook_mlp_out", "path": "v5_128k_layer_11", "hook": "blocks.11.hook_mlp_out", "neuronpedia": "gpt2-small/11-mlp_128k-oai" },
    ],
  },
  {
    release: "gpt2-small-mlp-out-v5-32k",
    repo: "jbloom/GPT2-Small-OAI-v5-32k-mlp-out-SAEs",
    configOverrides: {"dataset_path": "Skylion007/openwebtext"},
    loadable: false,
    reason: "OpenAI's v5 SAEs layer-normalise every activation vector before encoding it (normalize_activations \"layer_norm\"), which patchlab's encoder does not do",
    saes: [
      { "id": "blocks.0.hook_mlp_out", "path": "v5_32k_layer_0", "hook": "blocks.0.hook_mlp_out", "neuronpedia": "gpt2-small/0-mlp_32k-oai" },
      { "id": "blocks.1.hook_mlp_out", "path": "v5_32k_layer_1", "hook": "blocks.1.hook_mlp_out", "neuronpedia": "gpt2-small/1-mlp_32k-oai" },
      { "id": "blocks.2.hook_mlp_out", "path": "v5_32k_layer_2", "hook": "blocks.2.hook_mlp_out", "neuronpedia": "gpt2-small/2-mlp_32k-oai" },
      { "id": "blocks.3.hook_mlp_out", "path": "v5_32k_layer_3", "hook": "blocks.3.hook_mlp_out", "neuronpedia": "gpt2-small/3-mlp_32k-oai" },
      { "id": "blocks.4.hook_mlp_out", "path": "v5_32k_layer_4", "hook": "blocks.4.hook_mlp_out", "neuronpedia": "gpt2-small/4-mlp_32k-oai" },
      { "id": "blocks.5.hook_mlp_out", "path": "v5_32k_layer_5", "hook": "blocks.5.hook_mlp_out", "neuronpedia": "gpt2-small/5-mlp_32k-oai" },
      { "id": "blocks.6.hook_mlp_out", "path": "v5_32k_layer_6", "hook": "blocks.6.hook_mlp_out", "neuronpedia": "gpt2-small/6-mlp_32k-oai" },
      { "id": "blocks.7.hook_mlp_out", "path": "v5_32k_layer_7", "hook": "blocks.7.hook_mlp_out", "neuronpedia": "gpt2-small/7-mlp_32k-oai" },
      { "id": "blocks.8.hook_mlp_out", "path": "v5_32k_layer_8", "hook": "blocks.8.hook_mlp_out", "neuronpedia": "gpt2-small/8-mlp_32k-oai" },
      { "id": "blocks.9.hook_mlp_out", "path": "v5_32k_layer_9", "hook": "blocks.9.hook_mlp_out", "neuronpedia": "gpt2-small/9-mlp_32k-oai" },
      { "id": "blocks.10.hook_mlp_out", "path": "v5_32k_layer_10", "hook": "blocks.10.hook_mlp_out", "neuronpedia": "gpt2-small/10-mlp_32k-oai" },
      { "id": "blocks.11.hook_mlp_out", "path": "v5_32k_layer_11", "hook": "blocks.11.hook_mlp_out", "neuronpedia": "gpt2-small/11-mlp_32k-oai" },
    ],
  },
  {
    release: "gpt2-small-mlp-tm",
    repo: "tommmcgrath/gpt2-small-mlp-out-saes",
    configOverrides: {"dataset_path": "Skylion007/openwebtext", "model_from_pretrained_kwargs": {"center_writing_weights": true}},
    loadable: true,
    saes: [
      { "id": "blocks.0.hook_mlp_out", "path": "sae_group_gpt2_blocks.0.hook_mlp_out_24576:v1", "hook": "blocks.0.hook_mlp_out", "normScalingFactor": 1.049317316132615 },
      { "id": "blocks.1.hook_mlp_out", "path": "sae_group_gpt2_blocks.1.hook_mlp_out_24576:v0", "hook": "blocks.1.hook_mlp_out", "normScalingFactor": 2.3693984005104283 },
      { "id": "blocks.2.hook_mlp_out", "path": "sae_group_gpt2_blocks.2.hook_mlp_out_24576:v0", "hook": "blocks.2.hook_mlp_out", "normScalingFactor": 1.6411934982190302 },
      { "id": "blocks.3.hook_mlp_out", "path": "sae_group_gpt2_blocks.3.hook_mlp_out_24576:v0", "hook": "blocks.3.hook_mlp_out", "normScalingFactor": 1.8958522157897557 },
      { "id": "blocks.4.hook_mlp_out", "path": "sae_group_gpt2_blocks.4.hook_mlp_out_24576:v0", "hook": "blocks.4.hook_mlp_out", "normScalingFactor": 1.81673478700627 },
      { "id": "blocks.5.hook_mlp_out", "path": "sae_group_gpt2_blocks.5.hook_mlp_out_24576:v0", "hook": "blocks.5.hook_mlp_out", "normScalingFactor": 1.550234472245924 },
      { "id": "blocks.6.hook_mlp_out", "path": "sae_group_gpt2_blocks.6.hook_mlp_out_24576:v0", "hook": "blocks.6.hook_mlp_out", "normScalingFactor": 1.3237742807210804 },
      { "id": "blocks.7.hook_mlp_out", "path": "sae_group_gpt2_blocks.7.hook_mlp_out_24576:v0", "hook": "blocks.7.hook_mlp_out", "normScalingFactor": 1.1042905114723296 },
      { "id": "blocks.8.hook_mlp_out", "path": "sae_group_gpt2_blocks.8.hook_mlp_out_24576:v1", "hook": "blocks.8.hook_mlp_out", "normScalingFactor": 0.9123762783479742 },
      { "id": "blocks.9.hook_mlp_out", "path": "sae_group_gpt2_blocks.9.hook_mlp_out_24576:v0", "hook": "blocks.9.hook_mlp_out", "normScalingFactor": 0.6955335635232373 },
      { "id": "blocks.10.hook_mlp_out", "path": "sae_group_gpt2_blocks.10.hook_mlp_out_24576:v0", "hook": "blocks.10.hook_mlp_out", "normScalingFactor": 0.3619728926727644 },
      { "id": "blocks.11.hook_mlp_out", "path": "sae_group_gpt2_blocks.11.hook_mlp_out_24576:v2", "hook": "blocks.11.hook_mlp_out", "normScalingFactor": 0.2851548652550073 },
    ],
  },
  {
    release: "gpt2-small-res-jb",
    repo: "jbloom/GPT2-Small-SAEs-Reformatted",
    configOverrides: {"model_from_pretrained_kwargs": {"center_writing_weights": true}},
    loadable: true,
    saes: [
      { "id": "blocks.0.hook_resid_pre", "path": "blocks.0.hook_resid_pre", "hook": "blocks.0.hook_resid_pre", "neuronpedia": "gpt2-small/0-res-jb" },
      { "id": "blocks.1.hook_resid_pre", "path": "blocks.1.hook_resid_pre", "hook": "blocks.1.hook_resid_pre", "neuronpedia": "gpt2-small/1-res-jb" },
      { "id": "blocks.2.hook_resid_pre", "path": "blocks.2.hook_resid_pre", "hook": "blocks.2.hook_resid_pre", "neuronpedia": "gpt2-small/2-res-jb" },
      { "id": "blocks.3.hook_resid_pre", "path": "blocks.3.hook_resid_pre", "hook": "blocks.3.hook_resid_pre", "neuronpedia": "gpt2-small/3-res-jb" },
      { "id": "blocks.4.hook_resid_pre", "path": "blocks.4.hook_resid_pre", "hook": "blocks.4.hook_resid_pre", "neuronpedia": "gpt2-small/4-res-jb" },
      { "id": "blocks.5.hook_resid_pre", "path": "blocks.5.hook_resid_pre", "hook": "blocks.5.hook_resid_pre", "neuronpedia": "gpt2-small/5-res-jb" },
      { "id": "blocks.6.hook_resid_pre", "path": "blocks.6.hook_resid_pre", "hook": "blocks.6.hook_resid_pre", "neuronpedia": "gpt2-small/6-res-jb" },
      { "id": "blocks.7.hook_resid_pre", "path": "blocks.7.hook_resid_pre", "hook": "blocks.7.hook_resid_pre", "neuronpedia": "gpt2-small/7-res-jb" },
      { "id": "blocks.8.hook_resid_pre", "path": "blocks.8.hook_resid_pre", "hook": "blocks.8.hook_resid_pre", "neuronpedia": "gpt2-small/8-res-jb" },
      { "id": "blocks.9.hook_resid_pre", "path": "blocks.9.hook_resid_pre", "hook": "blocks.9.hook_resid_pre", "neuronpedia": "gpt2-small/9-res-jb" },
      { "id": "blocks.10.hook_resid_pre", "path": "blocks.10.hook_resid_pre", "hook": "blocks.10.hook_resid_pre", "neuronpedia": "gpt2-small/10-res-jb" },
      { "id": "blocks.11.hook_resid_pre", "path": "blocks.11.hook_resid_pre", "hook": "blocks.11.hook_resid_pre", "neuronpedia": "gpt2-small/11-res-jb" },
      { "id": "blocks.11.hook_resid_post", "path": "blocks.11.hook_resid_post", "hook": "blocks.11.hook_resid_post", "neuronpedia": "gpt2-small/12-res-jb" },
    ],
  },
  {
    release: "gpt2-small-res-jb-feature-splitting",
    repo: "jbloom/GPT2-Small-Feature-Splitting-Experiment-Layer-8",
    configOverrides: {"model_from_pretrained_kwargs": {"center_writing_weights": true}},
    loadable: true,
    saes: [
      { "id": "blocks.8.hook_resid_pre_768", "path": "blocks.8.hook_resid_pre_768", "hook": "blocks.8.hook_resid_pre", "neuronpedia": "gpt2-small/8-res_fs768-jb" },
      { "id": "blocks.8.hook_resid_pre_1536", "path": "blocks.8.hook_resid_pre_1536", "hook": "blocks.8.hook_resid_pre", "neuronpedia": "gpt2-small/8-res_fs1536-jb" },
      { "id": "blocks.8.hook_resid_pre_3072", "path": "blocks.8.hook_resid_pre_3072", "hook": "blocks.8.hook_resid_pre", "neuronpedia": "gpt2-small/8-res_fs3072-jb" },
      { "id": "blocks.8.hook_resid_pre_6144", "path": "blocks.8.hook_resid_pre_6144", "hook": "blocks.8.hook_resid_pre", "neuronpedia": "gpt2-small/8-res_fs6144-jb" },
      { "id": "blocks.8.hook_resid_pre_12288", "path": "blocks.8.hook_resid_pre_12288", "hook": "blocks.8.hook_resid_pre", "neuronpedia": "gpt2-small/8-res_fs12288-jb" },
      { "id": "blocks.8.hook_resid_pre_24576", "path": "blocks.8.hook_resid_pre_24576", "hook": "blocks.8.hook_resid_pre", "neuronpedia": "gpt2-small/8-res_fs24576-jb" },
      { "id": "blocks.8.hook_resid_pre_49152", "path": "blocks.8.hook_resid_pre_49152", "hook": "blocks.8.hook_resid_pre", "neuronpedia": "gpt2-small/8-res_fs49152-jb" },
      { "id": "blocks.8.hook_resid_pre_98304", "path": "blocks.8.hook_resid_pre_98304", "hook": "blocks.8.hook_resid_pre", "neuronpedia": "gpt2-small/8-res_fs98304-jb" },
    ],
  },
  {
    release: "gpt2-small-res_sce-ajt",
    repo: "neuronpedia/gpt2-small__res_sce-ajt",
    loadable: true,
    saes: [
      { "id": "blocks.2.hook_resid_pre", "path": "2-res_sce-ajt", "hook": "blocks.2.hook_resid_pre", "neuronpedia": "gpt2-small/2-res_sce-ajt" },
      { "id": "blocks.6.hook_resid_pre", "path": "6-res_sce-ajt", "hook": "blocks.6.hook_resid_pre", "neuronpedia": "gpt2-small/6-res_sce-ajt" },
      { "id": "blocks.10.hook_resid_pre", "path": "10-res_sce-ajt", "hook": "blocks.10.hook_resid_pre", "neuronpedia": "gpt2-small/10-res_sce-ajt" },
    ],
  },
  {
    release: "gpt2-small-res_scefr-ajt",
    repo: "neuronpedia/gpt2-small__res_scefr-ajt",
    loadable: true,
    saes: [
      { "id": "blocks.2.hook_resid_pre", "path": "2-res_scefr-ajt", "hook": "blocks.2.hook_resid_pre", "neuronpedia": "gpt2-small/2-res_scefr-ajt" },
      { "id": "blocks.6.hook_resid_pre", "path": "6-res_scefr-ajt", "hook": "blocks.6.hook_resid_pre", "neuronpedia": "gpt2-small/6-res_scefr-ajt" },
      { "id": "blocks.10.hook_resid_pre", "path": "10-res_scefr-ajt", "hook": "blocks.10.hook_resid_pre", "neuronpedia": "gpt2-small/10-res_scefr-ajt" },
    ],
  },
  {
    release: "gpt2-small-res_scl-ajt",
    repo: "neuronpedia/gpt2-small__res_scl-ajt",
    loadable: true,
    saes: [
      { "id": "blocks.2.hook_resid_pre", "path": "2-res_scl-ajt", "hook": "blocks.2.hook_resid_pre", "neuronpedia": "gpt2-small/2-res_scl-ajt" },
      { "id": "blocks.6.hook_resid_pre", "path": "6-res_scl-ajt", "hook": "blocks.6.hook_resid_pre", "neuronpedia": "gpt2-small/6-res_scl-ajt" },
      { "id": "blocks.10.hook_resid_pre", "path": "10-res_scl-ajt", "hook": "blocks.10.hook_resid_pre", "neuronpedia": "gpt2-small/10-res_scl-ajt" },
    ],
  },
  {
    release: "gpt2-small-res_sle-ajt",
    repo: "neuronpedia/gpt2-small__res_sle-ajt",
    loadable: true,
    saes: [
      { "id": "blocks.2.hook_resid_pre", "path": "2-res_sle-ajt", "hook": "blocks.2.hook_resid_pre", "neuronpedia": "gpt2-small/2-res_sle-ajt" },
      { "id": "blocks.6.hook_resid_pre", "path": "6-res_sle-ajt", "hook": "blocks.6.hook_resid_pre", "neuronpedia": "gpt2-small/6-res_sle-ajt" },
      { "id": "blocks.10.hook_resid_pre", "path": "10-res_sle-ajt", "hook": "blocks.10.hook_resid_pre", "neuronpedia": "gpt2-small/10-res_sle-ajt" },
    ],
  },
  {
    release: "gpt2-small-res_slefr-ajt",
    repo: "neuronpedia/gpt2-small__res_slefr-ajt",
    loadable: true,
    saes: [
      { "id": "blocks.2.hook_resid_pre", "path": "2-res_slefr-ajt", "hook": "blocks.2.hook_resid_pre", "neuronpedia": "gpt2-small/2-res_slefr-ajt" },
      { "id": "blocks.6.hook_resid_pre", "path": "6-res_slefr-ajt", "hook": "blocks.6.hook_resid_pre", "neuronpedia": "gpt2-small/6-res_slefr-ajt" },
      { "id": "blocks.10.hook_resid_pre", "path": "10-res_slefr-ajt", "hook": "blocks.10.hook_resid_pre", "neuronpedia": "gpt2-small/10-res_slefr-ajt" },
    ],
  },
  {
    release: "gpt2-small-res_sll-ajt",
    repo: "neuronpedia/gpt2-small__res_sll-ajt",
    loadable: true,
    saes: [
      { "id": "blocks.2.hook_resid_pre", "path": "2-res_sll-ajt", "hook": "blocks.2.hook_resid_pre", "neuronpedia": "gpt2-small/2-res_sll-ajt" },
      { "id": "blocks.6.hook_resid_pre", "path": "6-res_sll-ajt", "hook": "blocks.6.hook_resid_pre", "neuronpedia": "gpt2-small/6-res_sll-ajt" },
      { "id": "blocks.10.hook_resid_pre", "path": "10-res_sll-ajt", "hook": "blocks.10.hook_resid_pre", "neuronpedia": "gpt2-small/10-res_sll-ajt" },
    ],
  },
  {
    release: "gpt2-small-resid-mid-v5-128k",
    repo: "jbloom/GPT2-Small-OAI-v5-128k-resid-mid-SAEs",
    configOverrides: {"dataset_path": "Skylion007/openwebtext"},
    loadable: false,
    reason: "OpenAI's v5 SAEs layer-normalise every activation vector before encoding it (normalize_activations \"layer_norm\"), which patchlab's encoder does not do",
    saes: [
      { "id": "blocks.0.hook_resid_mid", "path": "v5_128k_layer_0", "hook": "blocks.0.hook_resid_mid", "neuronpedia": "gpt2-small/0-res_mid_128k-oai" },
      { "id": "blocks.1.hook_resid_mid", "path": "v5_128k_layer_1", "hook": "blocks.1.hook_resid_mid", "neuronpedia": "gpt2-small/1-res_mid_128k-oai" },
      { "id": "blocks.2.hook_resid_mid", "path": "v5_128k_layer_2", "hook": "blocks.2.hook_resid_mid", "neuronpedia": "gpt2-small/2-res_mid_128k-oai" },
      { "id": "blocks.3.hook_resid_mid", "path": "v5_128k_layer_3", "hook": "blocks.3.hook_resid_mid", "neuronpedia": "gpt2-small/3-res_mid_128k-oai" },
      { "id": "blocks.4.hook_resid_mid", "path": "v5_128k_layer_4", "hook": "blocks.4.hook_resid_mid", "neuronpedia": "gpt2-small/4-res_mid_128k-oai" },
      { "id": "blocks.5.hook_resid_mid", "path": "v5_128k_layer_5", "hook": "blocks.5.hook_resid_mid", "neuronpedia": "gpt2-small/5-res_mid_128k-oai" },
      { "id": "blocks.6.hook_resid_mid", "path": "v5_128k_layer_6", "hook": "blocks.6.hook_resid_mid", "neuronpedia": "gpt2-small/6-res_mid_128k-oai" },
      { "id": "blocks.7.hook_resid_mid", "path": "v5_128k_layer_7", "hook": "blocks.7.hook_resid_mid", "neuronpedia": "gpt2-small/7-res_mid_128k-oai" },
      { "id": "blocks.8.hook_resid_mid", "path": "v5_128k_layer_8", "hook": "blocks.8.hook_resid_mid", "neuronpedia": "gpt2-small/8-res_mid_128k-oai" },
      { "id": "blocks.9.hook_resid_mid", "path": "v5_128k_layer_9", "hook": "blocks.9.hook_resid_mid", "neuronpedia": "gpt2-small/9-res_mid_128k-oai" },
      { "id": "blocks.10.hook_resid_mid", "path": "v5_128k_layer_10", "hook": "blocks.10.hook_resid_mid", "neuronpedia": "gpt2-small/10-res_mid_128k-oai" },
      { "id": "blocks.11.hook_resid_mid", "path": "v5_128k_layer_11", "hook": "blocks.11.hook_resid_mid", "neuronpedia": "gpt2-small/11-res_mid_128k-oai" },
    ],
  },
  {
    release: "gpt2-small-resid-mid-v5-32k",
    repo: "jbloom/GPT2-Small-OAI-v5-32k-resid-mid-SAEs",
    configOverrides: {"dataset_path": "Skylion007/openwebtext"},
    loadable: false,
    reason: "OpenAI's v5 SAEs layer-normalise every activation vector before encoding it (normalize_activations \"layer_norm\"), which patchlab's encoder does not do",
    saes: [
      { "id": "blocks.0.hook_resid_mid", "path": "v5_32k_layer_0", "hook": "blocks.0.hook_resid_mid", "neuronpedia": "gpt2-small/0-res_mid_32k-oai" },
      { "id": "blocks.1.hook_resid_mid", "path": "v5_32k_layer_1", "hook": "blocks.1.hook_resid_mid", "neuronpedia": "gpt2-small/1-res_mid_32k-oai" },
      { "id": "blocks.2.hook_resid_mid", "path": "v5_32k_layer_2", "hook": "blocks.2.hook_resid_mid", "neuronpedia": "gpt2-small/2-res_mid_32k-oai" },
      { "id": "blocks.3.hook_resid_mid", "path": "v5_32k_layer_3", "hook": "blocks.3.hook_resid_mid", "neuronpedia": "gpt2-small/3-res_mid_32k-oai" },
      { "id": "blocks.4.hook_resid_mid", "path": "v5_32k_layer_4", "hook": "blocks.4.hook_resid_mid", "neuronpedia": "gpt2-small/4-res_mid_32k-oai" },
      { "id": "blocks.5.hook_resid_mid", "path": "v5_32k_layer_5", "hook": "blocks.5.hook_resid_mid", "neuronpedia": "gpt2-small/5-res_mid_32k-oai" },
      { "id": "blocks.6.hook_resid_mid", "path": "v5_32k_layer_6", "hook": "blocks.6.hook_resid_mid", "neuronpedia": "gpt2-small/6-res_mid_32k-oai" },
      { "id": "blocks.7.hook_resid_mid", "path": "v5_32k_layer_7", "hook": "blocks.7.hook_resid_mid", "neuronpedia": "gpt2-small/7-res_mid_32k-oai" },
      { "id": "blocks.8.hook_resid_mid", "path": "v5_32k_layer_8", "hook": "blocks.8.hook_resid_mid", "neuronpedia": "gpt2-small/8-res_mid_32k-oai" },
      { "id": "blocks.9.hook_resid_mid", "path": "v5_32k_layer_9", "hook": "blocks.9.hook_resid_mid", "neuronpedia": "gpt2-small/9-res_mid_32k-oai" },
      { "id": "blocks.10.hook_resid_mid", "path": "v5_32k_layer_10", "hook": "blocks.10.hook_resid_mid", "neuronpedia": "gpt2-small/10-res_mid_32k-oai" },
      { "id": "blocks.11.hook_resid_mid", "path": "v5_32k_layer_11", "hook": "blocks.11.hook_resid_mid", "neuronpedia": "gpt2-small/11-res_mid_32k-oai" },
    ],
  },
  {
    release: "gpt2-small-resid-post-v5-128k",
    repo: "jbloom/GPT2-Small-OAI-v5-128k-resid-post-SAEs",
    configOverrides: {"dataset_path": "Skylion007/openwebtext"},
    loadable: false,
    reason: "OpenAI's v5 SAEs layer-normalise every activation vector before encoding it (normalize_activations \"layer_norm\"), which patchlab's encoder does not do",
    saes: [
      { "id": "blocks.0.hook_resid_post", "path": "v5_128k_layer_0", "hook": "blocks.0.hook_resid_post", "neuronpedia": "gpt2-small/0-res_post_128k-oai" },
      { "id": "blocks.1.hook_resid_post", "path": "v5_128k_layer_1", "hook": "blocks.1.hook_resid_post", "neuronpedia": "gpt2-small/1-res_post_128k-oai" },
      { "id": "blocks.2.hook_resid_post", "path": "v5_128k_layer_2", "hook": "blocks.2.hook_resid_post", "neuronpedia": "gpt2-small/2-res_post_128k-oai" },
      { "id": "blocks.3.hook_resid_post", "path": "v5_128k_layer_3", "hook": "blocks.3.hook_resid_post", "neuronpedia": "gpt2-small/3-res_post_128k-oai" },
      { "id": "blocks.4.hook_resid_post", "path": "v5_128k_layer_4", "hook": "blocks.4.hook_resid_post", "neuronpedia": "gpt2-small/4-res_post_128k-oai" },
      { "id": "blocks.5.hook_resid_post", "path": "v5_128k_layer_5", "hook": "blocks.5.hook_resid_post", "neuronpedia": "gpt2-small/5-res_post_128k-oai" },
      { "id": "blocks.6.hook_resid_post", "path": "v5_128k_layer_6", "hook": "blocks.6.hook_resid_post", "neuronpedia": "gpt2-small/6-res_post_128k-oai" },
      { "id": "blocks.7.hook_resid_post", "path": "v5_128k_layer_7", "hook": "blocks.7.hook_resid_post", "neuronpedia": "gpt2-small/7-res_post_128k-oai" },
      { "id": "blocks.8.hook_resid_post", "path": "v5_128k_layer_8", "hook": "blocks.8.hook_resid_post", "neuronpedia": "gpt2-small/8-res_post_128k-oai" },
      { "id": "blocks.9.hook_resid_post", "path": "v5_128k_layer_9", "hook": "blocks.9.hook_resid_post", "neuronpedia": "gpt2-small/9-res_post_128k-oai" },
      { "id": "blocks.10.hook_resid_post", "path": "v5_128k_layer_10", "hook": "blocks.10.hook_resid_post", "neuronpedia": "gpt2-small/10-res_post_128k-oai" },
      { "id": "blocks.11.hook_resid_post", "path": "v5_128k_layer_11", "hook": "blocks.11.hook_resid_post", "neuronpedia": "gpt2-small/11-res_post_128k-oai" },
    ],
  },
  {
    release: "gpt2-small-resid-post-v5-32k",
    repo: "jbloom/GPT2-Small-OAI-v5-32k-resid-post-SAEs",
    configOverrides: {"dataset_path": "Skylion007/openwebtext"},
    loadable: false,
    reason: "OpenAI's v5 SAEs layer-normalise every activation vector before encoding it (normalize_activations \"layer_norm\"), which patchlab's encoder does not do",
    saes: [
      { "id": "blocks.0.hook_resid_post", "path": "v5_32k_layer_0.pt", "hook": "blocks.0.hook_resid_post", "neuronpedia": "gpt2-small/0-res_post_32k-oai" },
      { "id": "blocks.1.hook_resid_post", "path": "v5_32k_layer_1.pt", "hook": "blocks.1.hook_resid_post", "neuronpedia": "gpt2-small/1-res_post_32k-oai" },
      { "id": "blocks.2.hook_resid_post", "path": "v5_32k_layer_2.pt", "hook": "blocks.2.hook_resid_post", "neuronpedia": "gpt2-small/2-res_post_32k-oai" },
      { "id": "blocks.3.hook_resid_post", "path": "v5_32k_layer_3.pt", "hook": "blocks.3.hook_resid_post", "neuronpedia": "gpt2-small/3-res_post_32k-oai" },
      { "id": "blocks.4.hook_resid_post", "path": "v5_32k_layer_4.pt", "hook": "blocks.4.hook_resid_post", "neuronpedia": "gpt2-small/4-res_post_32k-oai" },
      { "id": "blocks.5.hook_resid_post", "path": "v5_32k_layer_5.pt", "hook": "blocks.5.hook_resid_post", "neuronpedia": "gpt2-small/5-res_post_32k-oai" },
      { "id": "blocks.6.hook_resid_post", "path": "v5_32k_layer_6.pt", "hook": "blocks.6.hook_resid_post", "neuronpedia": "gpt2-small/6-res_post_32k-oai" },
      { "id": "blocks.7.hook_resid_post", "path": "v5_32k_layer_7.pt", "hook": "blocks.7.hook_resid_post", "neuronpedia": "gpt2-small/7-res_post_32k-oai" },
      { "id": "blocks.8.hook_resid_post", "path": "v5_32k_layer_8.pt", "hook": "blocks.8.hook_resid_post", "neuronpedia": "gpt2-small/8-res_post_32k-oai" },
      { "id": "blocks.9.hook_resid_post", "path": "v5_32k_layer_9.pt", "hook": "blocks.9.hook_resid_post", "neuronpedia": "gpt2-small/9-res_post_32k-oai" },
      { "id": "blocks.10.hook_resid_post", "path": "v5_32k_layer_10.pt", "hook": "blocks.10.hook_resid_post", "neuronpedia": "gpt2-small/10-res_post_32k-oai" },
      { "id": "blocks.11.hook_resid_post", "path": "v5_32k_layer_11.pt", "hook": "blocks.11.hook_resid_post", "neuronpedia": "gpt2-small/11-res_post_32k-oai" },
    ],
  },
];

/** The release of this name, or null. */
export function saeRelease(release) {
  return SAE_RELEASES.find((r) => r.release === release) || null;
}

/** Where SAELens finds an SAE: {repo, folder, overrides, neuronpedia, loadable, reason}; a release it does not list is a repo id and `id` a folder in it, as SAELens reads them. */
export function saeSource(release, id) {
  const r = saeRelease(release);
  if (!r) return { repo: release, folder: id, overrides: null, neuronpedia: null, loadable: true, reason: null, known: false };
  const s = r.saes.find((x) => x.id === id);
  if (!s) return null;
  const overrides = { ...(r.configOverrides || {}) };
  if (s.neuronpedia) overrides.neuronpedia_id = s.neuronpedia;
  return { repo: r.repo, folder: s.path, overrides, neuronpedia: s.neuronpedia || null, loadable: r.loadable, reason: r.reason || null, known: true, hook: s.hook, normScalingFactor: s.normScalingFactor ?? null };
}
