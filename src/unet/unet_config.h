#pragma once
// The U-Net's settings: UNetModel.__init__'s arguments, read from configs/ either in that form or
// as create_model's script flags. No torch here, so config code does not pay for it.
#include <cstddef>
#include <string>
#include <vector>

#include "core/config.h"

namespace iidm {

// The arguments of UNetModel.__init__ (not create_model's: attention_resolutions are the
// down-sampling factors ds at which attention runs). dims is always 2.
struct UNetConfig {
  int image_size = 64;  // informational; the network is fully convolutional
  int in_channels = 3;
  int model_channels = 128;
  int out_channels = 3;  // 2 x in_channels when the variance is learned
  int num_res_blocks = 2;
  std::vector<int> attention_resolutions{};
  double dropout = 0.0;
  std::vector<double> channel_mult{1, 2, 4, 8};  // may be fractional (SDM 512: 0.5, ...)
  bool conv_resample = true;
  int num_classes = 0;  // label channels fed to SPADE (classes, + 1 with an instance-edge map)
  int num_heads = 1;
  int num_head_channels = -1;
  int num_heads_upsample = -1;
  bool use_scale_shift_norm = false;
  bool resblock_updown = false;
  bool use_new_attention_order = false;
  bool use_checkpoint = false;  // accepted for compatibility; gradient checkpointing is not used
  bool use_fp16 = false;        // accepted for compatibility; precision is chosen at run time
  // Not a UNetModel argument: whether the last label channel is SDM's instance-edge map
  // (create_model's no_instance = false). Decides how label maps are turned into `y`.
  bool instance_edge = false;

  // The JSON keys (core/config.h). use_checkpoint and use_fp16 are written only when set: the
  // text of to_json() is what distill checkpoints compare on resume, and it did not have them.
  template <class Self, class Field>
  static void fields(Self& c, Field&& field) {
    field("image_size", c.image_size);
    field("in_channels", c.in_channels, kRequired);
    field("model_channels", c.model_channels, kRequired);
    field("out_channels", c.out_channels, kRequired);
    field("num_res_blocks", c.num_res_blocks, kRequired);
    field("attention_resolutions", c.attention_resolutions, kRequired);
    field("dropout", c.dropout);
    field("channel_mult", c.channel_mult);
    field("conv_resample", c.conv_resample);
    field("num_classes", c.num_classes, kRequired);
    field("num_heads", c.num_heads);
    field("num_head_channels", c.num_head_channels);
    field("num_heads_upsample", c.num_heads_upsample);
    field("use_scale_shift_norm", c.use_scale_shift_norm);
    field("resblock_updown", c.resblock_updown);
    field("use_new_attention_order", c.use_new_attention_order);
    field("use_checkpoint", c.use_checkpoint, written_if(c.use_checkpoint));
    field("use_fp16", c.use_fp16, written_if(c.use_fp16));
    field("instance_edge", c.instance_edge);
  }

  int num_labels() const { return instance_edge ? num_classes - 1 : num_classes; }
  int width(size_t level) const { return static_cast<int>(channel_mult[level] * model_channels); }

  void validate() const;                              // throws iidm::Error naming the bad field
  static UNetConfig from_json(ConfigReader& reader);  // reads and validates; unknown keys are errors
  // From create_model's arguments as SDM/IIDM scripts pass them (num_channels, attention
  // resolutions as image sizes "32,16,8", channel_mult "" = by image size, learn_sigma,
  // no_instance, image_size an int or IIDM's [width, height]).
  static UNetConfig from_create_model(ConfigReader& reader);
  // Either {"create_model": {...}} or UNetModel's own arguments.
  static UNetConfig from_any(ConfigReader& reader);
  Json to_json() const;  // UNetModel's arguments, as from_json reads them
};

}  // namespace iidm
