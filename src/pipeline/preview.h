#pragma once
// What a U-Net training run shows of its model: rows of mask | reference | sample (IIDM-style).
#include <torch/torch.h>

#include "autoencoder/autoencoder.h"
#include "pipeline/model_config.h"
#include "unet/unet.h"

namespace iidm {

// Up to `rows` items of a training cache (x0 [N, C, h, w]: latents, or pixels for pixel models;
// labels [N, h, w]). Each row: the item's colourised mask, the reference (another item, decoded
// for latent models) and a sample generated under the mask from it: strength 0.7 on ddim25 with
// guidance 2 for latent models (the reference gives the style), strength 1 for pixel models.
// The cache holds each image and then its mirror, so even items only. Returns [3, rows*H, 3*W].
torch::Tensor training_preview(const ModelConfig& config, UNetModel model, Autoencoder autoencoder,
                               const torch::Tensor& x0, const torch::Tensor& labels, int64_t ignore_label,
                               int rows = 4);

}  // namespace iidm
