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

UNetConfig ModelConfig::read_unet(ConfigReader& r, const std::string& key) {
  ConfigReader unet = r.child(key);
  return UNetConfig::from_any(unet);
}

std::optional<AutoencoderConfig> ModelConfig::read_autoencoder(ConfigReader& r, const std::string& key) {
  if (r.json().at(key).is_string()) {
    // A separate autoencoder config (as train-autoencoder writes it, with its measured latent
    // scale), relative to this file's folder.
    const std::string name = r.get<std::string>(key, "");
    const std::string path = (std::filesystem::path(r.where()).parent_path() / name).string();
    ConfigReader ae(read_json_file(path), path);
    return AutoencoderConfig::from_json(ae);
  }
  ConfigReader ae = r.child(key);
  return AutoencoderConfig::from_json(ae);
}

ModelConfig ModelConfig::from_json(ConfigReader& r) {
  ModelConfig c;
  read_fields(r, c);
  return r.validated(c);
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  ConfigReader reader(read_json_file(path), path);
  return from_json(reader);
}

Json ModelConfig::to_json() const { return write_fields(*this); }

}  // namespace iidm
