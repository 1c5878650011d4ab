#pragma once
// A model file set as users name it in configs/: the denoiser U-Net, its diffusion, and (latent
// models) the first-stage autoencoder. Weights are separate safetensors files.
#include <optional>
#include <string>

#include "autoencoder/autoencoder.h"
#include "core/config.h"
#include "diffusion/gaussian_diffusion.h"
#include "unet/unet.h"

namespace iidm {

struct ModelConfig {
  std::string note;
  UNetConfig unet;
  DiffusionConfig diffusion;
  std::optional<AutoencoderConfig> autoencoder;  // set: latent diffusion (IIDM); unset: pixel (SDM)

  // {"note", "unet": {UNetModel args} | {"create_model": {...}}, "diffusion": {...},
  //  "autoencoder": {...} or "file.json" (relative to this file)}; unknown keys anywhere are errors
  // naming the file.
  static ModelConfig from_json(ConfigReader& reader);
  static ModelConfig from_file(const std::string& path);
  void validate() const;
  // Channels the U-Net denoises: the autoencoder's embed_dim or 3 (RGB).
  int data_channels() const { return autoencoder ? autoencoder->embed_dim : 3; }
};

}  // namespace iidm
