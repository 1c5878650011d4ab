#include "unet/unet_config.h"

#include <sstream>

#include "core/error.h"

namespace iidm {

void UNetConfig::validate() const {
  auto positive = [](int v, const char* name) {
    if (v <= 0) fail("unet config: {} must be positive, got {}", name, v);
  };
  positive(in_channels, "in_channels");
  positive(model_channels, "model_channels");
  positive(out_channels, "out_channels");
  positive(num_res_blocks, "num_res_blocks");
  positive(num_classes, "num_classes");
  if (channel_mult.empty()) fail("unet config: channel_mult is empty");
  for (size_t level = 0; level < channel_mult.size(); ++level) {
    if (!(channel_mult[level] > 0))
      fail("unet config: channel_mult entries must be positive, got {}", channel_mult[level]);
    // Every normalised width must split into GroupNorm's 32 groups.
    if (width(level) <= 0 || width(level) % 32)
      fail("unet config: channel width {} x {} = {} is not a positive multiple of 32 (GroupNorm groups)",
           channel_mult[level], model_channels, width(level));
  }
  if (dropout < 0 || dropout >= 1) fail("unet config: dropout must be in [0, 1), got {}", dropout);
  const int max_ds = 1 << (channel_mult.size() - 1);
  for (int r : attention_resolutions)
    if (r <= 0 || (r & (r - 1)) || r > max_ds)
      fail(
          "unet config: attention_resolutions entry {} is not a down-sampling factor 1..{} "
          "(these are factors ds, not image sizes)",
          r, max_ds);
  if (num_head_channels == -1) {
    positive(num_heads, "num_heads");
  } else {
    positive(num_head_channels, "num_head_channels");
    for (size_t level = 0; level < channel_mult.size(); ++level)
      if (width(level) % num_head_channels)
        fail("unet config: width {} at level {} is not divisible by num_head_channels {}", width(level), level,
             num_head_channels);
  }
  if (num_heads_upsample != -1 && num_heads_upsample <= 0)
    fail("unet config: num_heads_upsample must be -1 or positive, got {}", num_heads_upsample);
}

UNetConfig UNetConfig::from_json(ConfigReader& r) {
  UNetConfig c;
  read_fields(r, c);
  if (r.has("dims") && r.get("dims", 2) != 2) fail("{}: only dims = 2 is supported", r.where());
  return r.validated(c);
}

namespace {
std::vector<int> parse_int_list(const std::string& text, const std::string& where, const char* key) {
  std::vector<int> out;
  std::string item;
  std::stringstream ss(text);
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stoi(item, &used));
      while (used < item.size() && item[used] == ' ') ++used;
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      fail("{}: '{}' = \"{}\" is not a comma-separated list of integers", where, key, text);
    }
  }
  return out;
}
}  // namespace

UNetConfig UNetConfig::from_create_model(ConfigReader& r) {
  UNetConfig c;
  // image_size: an int, or IIDM's (width, height) whose width decides the defaults.
  int size = 0;
  const Json image_size = r.json().value("image_size", Json(64));
  r.ignore({"image_size"});
  if (image_size.is_number_integer())
    size = image_size.get<int>();
  else if (image_size.is_array() && image_size.size() == 2 && image_size[0].is_number_integer())
    size = image_size[0].get<int>();
  else
    fail("{}: image_size must be an integer or [width, height], got {}", r.where(), image_size.dump());
  c.image_size = size;
  // Defaults are model_and_diffusion_defaults(), i.e. what the scripts' flags mean when omitted.
  const bool learn_sigma = r.get("learn_sigma", false);
  const bool no_instance = r.get("no_instance", false);
  if (!r.get("class_cond", true)) fail("{}: class_cond = false has no label map to condition on", r.where());
  const int classes = r.get("num_classes", 151);
  c.instance_edge = !no_instance;
  c.num_classes = no_instance ? classes : classes + 1;
  c.model_channels = r.get("num_channels", 128);
  c.num_res_blocks = r.get("num_res_blocks", 2);
  const std::string mult = r.get<std::string>("channel_mult", "");
  if (mult.empty()) {
    if (size == 512)
      c.channel_mult = {0.5, 1, 1, 2, 2, 4, 4};
    else if (size == 256)
      c.channel_mult = {1, 1, 2, 2, 4, 4};
    else if (size == 128)
      c.channel_mult = {1, 1, 2, 3, 4};
    else if (size == 64)
      c.channel_mult = {1, 2, 3, 4};
    else
      fail("{}: no default channel_mult for image_size {} (give channel_mult)", r.where(), size);
  } else {
    auto values = parse_int_list(mult, r.where(), "channel_mult");
    c.channel_mult.assign(values.begin(), values.end());
  }
  c.attention_resolutions.clear();
  for (int res :
       parse_int_list(r.get<std::string>("attention_resolutions", "16,8"), r.where(), "attention_resolutions")) {
    if (res <= 0 || size % res) fail("{}: attention resolution {} does not divide image_size {}", r.where(), res, size);
    c.attention_resolutions.push_back(size / res);
  }
  c.in_channels = 3;
  c.out_channels = learn_sigma ? 6 : 3;
  c.num_heads = r.get("num_heads", 4);
  c.num_head_channels = r.get("num_head_channels", -1);
  c.num_heads_upsample = r.get("num_heads_upsample", -1);
  c.use_scale_shift_norm = r.get("use_scale_shift_norm", true);
  c.dropout = r.get("dropout", 0.0);
  c.resblock_updown = r.get("resblock_updown", false);
  c.use_fp16 = r.get("use_fp16", false);
  c.use_checkpoint = r.get("use_checkpoint", false);
  c.use_new_attention_order = r.get("use_new_attention_order", false);
  return r.validated(c);
}

UNetConfig UNetConfig::from_any(ConfigReader& r) {
  if (r.has("create_model")) {
    auto inner = r.child("create_model");
    r.finish();
    return from_create_model(inner);
  }
  return from_json(r);
}

Json UNetConfig::to_json() const { return write_fields(*this); }

}  // namespace iidm
