#include "pipeline/model_config.h"

namespace iidm {

void ModelConfig::validate() const {
  unet.validate();
  diffusion.validate();
  if (autoencoder) autoencoder->validate();
  const int channels = data_channels();
  if (unet.in_channels != channels)
    fail("model config: the U-Net takes {} channels but the {} has {}", unet.in_channels,
         autoencoder ? "autoencoder latent" : "image", channels);
  const int expected_out = diffusion.learn_sigma ? 2 * channels : channels;
  if (unet.out_channels != expected_out)
    fail("model config: with learn_sigma = {} the U-Net must output {} channels, it has out_channels = {}",
         diffusion.learn_sigma, expected_out, unet.out_channels);
}

ModelConfig ModelConfig::from_json(ConfigReader& r) {
  ModelConfig c;
  c.note = r.get<std::string>("note", "");
  {
    auto unet = r.child("unet");
    c.unet = UNetConfig::from_any(unet);
  }
  {
    auto diffusion = r.child("diffusion");
    c.diffusion = DiffusionConfig::from_json(diffusion);
  }
  if (r.has("autoencoder")) {
    auto ae = r.child("autoencoder");
    c.autoencoder = AutoencoderConfig::from_json(ae);
  }
  return r.validated(c);
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  ConfigReader reader(read_json_file(path), path);
  return from_json(reader);
}

}  // namespace iidm
