#pragma once
// taming-transformers' NLayerDiscriminator (taming/modules/discriminator/model.py): pix2pix's
// PatchGAN, the adversary of LDM's first-stage losses.
#include <torch/torch.h>

namespace iidm {

// PatchGAN with BatchNorm (no ActNorm), `layers` strided stages; child `main` as in the reference,
// so the `loss.discriminator.*` weights of an LDM checkpoint load into it.
class NLayerDiscriminatorImpl : public torch::nn::Module {
 public:
  NLayerDiscriminatorImpl(int input_channels = 3, int channels = 64, int layers = 3);
  torch::Tensor forward(const torch::Tensor& x);  // [N, 3, H, W] -> patch logits [N, 1, h, w]
  torch::nn::Sequential main{nullptr};
};
TORCH_MODULE(NLayerDiscriminator);

}  // namespace iidm
