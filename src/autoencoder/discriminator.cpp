#include "autoencoder/discriminator.h"

#include <algorithm>

#include "core/error.h"

namespace iidm {
using torch::Tensor;
namespace nn = torch::nn;

NLayerDiscriminatorImpl::NLayerDiscriminatorImpl(int input_channels, int ndf, int layers) {
  if (layers < 1 || ndf < 1) fail("discriminator: needs >= 1 layer and channel, got {} and {}", layers, ndf);
  main = register_module("main", nn::Sequential());
  auto conv = [](int in, int out, int stride, bool bias) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, 4).stride(stride).padding(1).bias(bias));
  };
  auto lrelu = [] { return nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)); };
  main->push_back(conv(input_channels, ndf, 2, true));
  main->push_back(lrelu());
  int mult = 1;
  for (int n = 1; n <= layers; ++n) {
    const int prev = mult;
    mult = std::min(1 << n, 8);
    // The last of these keeps the resolution (stride 1), as in pix2pix's PatchGAN.
    main->push_back(conv(ndf * prev, ndf * mult, n < layers ? 2 : 1, false));
    main->push_back(nn::BatchNorm2d(ndf * mult));
    main->push_back(lrelu());
  }
  main->push_back(conv(ndf * mult, 1, 1, true));
  // taming's weights_init: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales.
  torch::NoGradGuard no_grad;
  for (auto& m : main->modules(false)) {
    if (auto* c = m->as<nn::Conv2d>()) c->weight.normal_(0.0, 0.02);
    if (auto* b = m->as<nn::BatchNorm2d>()) {
      b->weight.normal_(1.0, 0.02);
      b->bias.zero_();
    }
  }
}

Tensor NLayerDiscriminatorImpl::forward(const Tensor& x) { return main->forward(x); }

}  // namespace iidm
