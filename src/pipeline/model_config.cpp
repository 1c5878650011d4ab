#include "pipeline/model_config.h"

#include <filesystem>

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
  if (r.has("autoencoder") && r.json()["autoencoder"].is_string()) {
    // A separate autoencoder config (as train-autoencoder writes it, with its measured latent
    // scale), relative to this file's folder.
    const std::string name = r.get<std::string>("autoencoder", "");
    const std::string path = (std::filesystem::path(r.where()).parent_path() / name).string();
    ConfigReader ae(read_json_file(path), path);
    c.autoencoder = AutoencoderConfig::from_json(ae);
  } else if (r.has("autoencoder")) {
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
