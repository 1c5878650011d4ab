#include "pipeline/preview.h"

#include "core/error.h"
#include "core/image.h"
#include "core/labels.h"
#include "pipeline/pipeline.h"
#include "postprocess/grid.h"

namespace iidm {
using torch::Tensor;

Tensor training_preview(const ModelConfig& config, UNetModel model, Autoencoder autoencoder, const Tensor& x0,
                        const Tensor& labels, int64_t ignore_label, int rows) {
  if (config.autoencoder && !autoencoder) fail("preview: a latent model needs its autoencoder");
  if (x0.size(0) < 1 || x0.size(0) != labels.size(0))
    fail("preview: {} latents for {} label maps", x0.size(0), labels.size(0));
  torch::NoGradGuard no_grad;
  const int64_t n = std::min<int64_t>(rows, x0.size(0));
  const int f = config.autoencoder ? config.autoencoder->ddconfig.downsampling_factor() : 1;
  std::vector<GenerationItem> items;
  std::vector<Tensor> masks, references;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t item = (2 * k) % x0.size(0), ref = (2 * k + 2) % x0.size(0);
    GenerationItem g;
    g.name = fmt::format("preview{}", k);
    g.labels =
        resize_labels_nearest(labels[item].unsqueeze(0).to(torch::kInt64), labels.size(1) * f, labels.size(2) * f)[0];
    const Tensor x = x0[ref].unsqueeze(0);
    g.start = (autoencoder ? autoencoder->decode(x) : x)[0].clamp(-1, 1);
    g.seed = static_cast<uint64_t>(k);
    masks.push_back(colorize_labels(g.labels, ignore_label));
    references.push_back(g.start);
    items.push_back(g);
  }
  Stage stage;
  stage.respacing = "ddim25";
  stage.strength = config.autoencoder ? 0.7 : 1.0;
  stage.guidance = 2.0;
  PipelineOptions options;
  options.ignore_label = ignore_label;
  Pipeline pipeline(config, {model}, {1.0}, autoencoder, options);
  const Tensor samples = pipeline.generate(items, {stage}).images;
  std::vector<std::vector<Tensor>> grid;
  for (int64_t k = 0; k < n; ++k) grid.push_back({masks[k], references[k], samples[k]});
  return image_grid(grid);
}

}  // namespace iidm
