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

  // The JSON keys (core/config.h). to_json writes the U-Net as UNetModel's arguments and the
  // autoencoder inline, so the written file stands alone wherever it is put.
  template <class Self, class Field>
  static void fields(Self& c, Field&& field) {
    field("note", c.note, written_if(!c.note.empty()));
    field("unet", c.unet, read_with(&read_unet), kRequired);
    field("diffusion", c.diffusion, kRequired);
    field("autoencoder", c.autoencoder, read_with(&read_autoencoder));
  }

  // {"note", "unet": {UNetModel args} | {"create_model": {...}}, "diffusion": {...},
  //  "autoencoder": {...} or "file.json" (relative to this file)}; unknown keys anywhere are errors
  // naming the file.
  static ModelConfig from_json(ConfigReader& reader);
  static ModelConfig from_file(const std::string& path);
  Json to_json() const;
  void validate() const;
  // Channels the U-Net denoises: the autoencoder's embed_dim or 3 (RGB).
  int data_channels() const { return autoencoder ? autoencoder->embed_dim : 3; }

 private:
  static UNetConfig read_unet(ConfigReader& reader, const std::string& key);
  static std::optional<AutoencoderConfig> read_autoencoder(ConfigReader& reader, const std::string& key);
};

}  // namespace iidm
