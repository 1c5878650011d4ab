#pragma once
// Tiny random-weight models on disk (config + safetensors), for end-to-end tests of the pipeline
// and the command line: a 29-class latent U-Net over a tiny VQ autoencoder (IIDM layout), and a
// pixel-space U-Net (SDM layout).
#include <torch/torch.h>

#include <fstream>
#include <string>

#include "core/state_dict.h"
#include "pipeline/model_config.h"
#include "test_util.h"

namespace iidm::test {

struct TinyModel {
  std::string config, unet, unet2, autoencoder;
};

inline void randomize(torch::nn::Module& module, double range = 0.1) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) p.uniform_(-range, range);
}

// A 2-level U-Net with every optional block on (scale-shift, resblock up/down, attention, learned sigma).
inline UNetConfig tiny_unet_config(int num_classes = 4) {
  UNetConfig c;
  c.in_channels = 3;
  c.model_channels = 32;
  c.out_channels = 6;
  c.num_res_blocks = 1;
  c.attention_resolutions = {2};
  c.channel_mult = {1, 2};
  c.num_classes = num_classes;
  c.num_head_channels = 16;
  c.use_scale_shift_norm = true;
  c.resblock_updown = true;
  return c;
}

// latent = true: IIDM-like (VQ autoencoder, multiples of 4); false: SDM-like pixel model.
inline TinyModel write_tiny_model(const TempDir& dir, bool latent, uint64_t seed = 0) {
  const std::string unet = R"("unet": {"in_channels": 3, "model_channels": 32, "out_channels": 6, "num_res_blocks": 1,
    "attention_resolutions": [2], "channel_mult": [1, 2], "num_classes": 29, "num_head_channels": 16,
    "use_scale_shift_norm": true, "resblock_updown": true},
    "diffusion": {"steps": 1000, "noise_schedule": "linear", "learn_sigma": true})";
  const std::string ae =
      R"(, "autoencoder": {"kind": "vq", "embed_dim": 3, "n_embed": 16, "ddconfig": {"double_z": false,
    "z_channels": 3, "resolution": 32, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": []}})";
  TinyModel m;
  m.config = dir.file(latent ? "tiny-latent.json" : "tiny-pixel.json");
  std::ofstream(m.config) << "{" << unet << (latent ? ae : "") << "}";
  ModelConfig config = ModelConfig::from_file(m.config);
  torch::manual_seed(seed);
  UNetModel u(config.unet), u2(config.unet);
  randomize(*u);
  randomize(*u2);
  m.unet = dir.file(latent ? "unet-latent.safetensors" : "unet-pixel.safetensors");
  m.unet2 = dir.file(latent ? "unet2-latent.safetensors" : "unet2-pixel.safetensors");
  save_state_dict(*u, m.unet);
  save_state_dict(*u2, m.unet2);
  if (latent) {
    Autoencoder a(*config.autoencoder);
    randomize(*a, 0.2);
    m.autoencoder = dir.file("ae.safetensors");
    save_state_dict(*a, m.autoencoder);
  }
  return m;
}

}  // namespace iidm::test
