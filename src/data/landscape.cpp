#include "data/landscape.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <random>

namespace iidm {

const std::vector<std::string> kLandscapeClasses{
    "mountain", "sky",      "water", "sea",   "rock",    "tree",  "earth",     "hill",  "river", "sand",
    "land",     "building", "grass", "plant", "person",  "boat",  "waterfall", "wall",  "pier",  "path",
    "lake",     "bridge",   "field", "road",  "railing", "fence", "ship",      "house", "other"};

const std::vector<std::array<uint8_t, 3>> kLandscapeClassColors{
    {130, 96, 70},    // mountain
    {110, 170, 235},  // sky
    {40, 110, 200},   // water
    {20, 70, 150},    // sea
    {120, 120, 120},  // rock
    {30, 120, 40},    // tree
    {150, 110, 60},   // earth
    {110, 150, 70},   // hill
    {70, 150, 220},   // river
    {225, 205, 150},  // sand
    {175, 150, 100},  // land
    {190, 80, 70},    // building
    {110, 200, 80},   // grass
    {60, 170, 110},   // plant
    {240, 120, 180},  // person
    {200, 140, 40},   // boat
    {180, 230, 250},  // waterfall
    {170, 160, 150},  // wall
    {140, 100, 80},   // pier
    {210, 180, 120},  // path
    {50, 130, 180},   // lake
    {160, 60, 130},   // bridge
    {200, 200, 70},   // field
    {80, 80, 90},     // road
    {230, 160, 90},   // railing
    {150, 90, 40},    // fence
    {100, 80, 170},   // ship
    {220, 90, 40},    // house
    {250, 250, 250},  // other
};

namespace {

using Rng = std::mt19937_64;

double uniform(Rng& rng, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
int uniform_int(Rng& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
bool chance(Rng& rng, double p) { return uniform(rng, 0, 1) < p; }

cv::Vec3f rgb(double r, double g, double b) {
  return cv::Vec3f(static_cast<float>(r / 255), static_cast<float>(g / 255), static_cast<float>(b / 255));
}
cv::Vec3f mix(const cv::Vec3f& a, const cv::Vec3f& b, double t) {
  return a * static_cast<float>(1 - t) + b * static_cast<float>(t);
}
cv::Vec3f jitter(const cv::Vec3f& c, Rng& rng, double amount) {
  cv::Vec3f out = c;
  for (int i = 0; i < 3; ++i) out[i] = static_cast<float>(std::clamp(c[i] + uniform(rng, -amount, amount), 0.0, 1.0));
  return out;
}

// Fractal value noise in [0, 1]: random grids of doubling resolution, upsampled smoothly and summed.
cv::Mat fractal_noise(Rng& rng, int width, int height, int base_cells, int octaves, double persistence = 0.5) {
  cv::Mat sum = cv::Mat::zeros(height, width, CV_32F);
  double amplitude = 1.0, total = 0.0;
  int cells = base_cells;
  for (int o = 0; o < octaves; ++o) {
    const int gw = std::max(2, cells), gh = std::max(2, cells * height / std::max(width, 1) + 1);
    cv::Mat grid(gh, gw, CV_32F);
    for (int y = 0; y < gh; ++y)
      for (int x = 0; x < gw; ++x) grid.at<float>(y, x) = static_cast<float>(uniform(rng, 0, 1));
    cv::Mat up;
    cv::resize(grid, up, cv::Size(width, height), 0, 0, cv::INTER_CUBIC);
    sum += up * amplitude;
    total += amplitude;
    amplitude *= persistence;
    cells *= 2;
  }
  sum /= total;
  cv::Mat clipped;
  cv::min(cv::max(sum, 0.0), 1.0, clipped);
  return clipped;
}

// A 1-D ridge line (y per column) by midpoint displacement: jagged for mountains, soft for hills.
std::vector<double> ridge(Rng& rng, int width, double base, double amplitude, double roughness) {
  int n = 1;
  while (n < width) n *= 2;
  std::vector<double> h(n + 1, 0.0);
  h[0] = uniform(rng, -1, 1);
  h[n] = uniform(rng, -1, 1);
  double spread = 1.0;
  for (int step = n; step > 1; step /= 2) {
    for (int i = step / 2; i < n; i += step)
      h[i] = 0.5 * (h[i - step / 2] + h[i + step / 2]) + uniform(rng, -spread, spread);
    spread *= roughness;
  }
  double lo = *std::min_element(h.begin(), h.end()), hi = *std::max_element(h.begin(), h.end());
  std::vector<double> out(width);
  for (int x = 0; x < width; ++x) out[x] = base - amplitude * ((h[x * n / width] - lo) / std::max(hi - lo, 1e-9));
  return out;
}

struct Palette {
  cv::Vec3f sky_top, sky_horizon, sun, cloud, light;  // light: multiplies everything lit
  double brightness = 1.0, haze = 0.4;
  bool stars = false;
  cv::Vec3f grass, field, tree, tree_dark, earth, sand, rock, mountain, snow, water_tint;
};

Palette make_palette(Rng& rng, const LandscapeStyle& s) {
  Palette p;
  if (s.time_of_day == "day") {
    p.sky_top = rgb(40, 100, 200);
    p.sky_horizon = rgb(170, 205, 240);
    p.sun = rgb(255, 250, 230);
    p.cloud = rgb(250, 250, 252);
    p.light = rgb(255, 255, 250);
    p.haze = 0.45;
  } else if (s.time_of_day == "golden") {
    p.sky_top = rgb(70, 110, 180);
    p.sky_horizon = rgb(250, 200, 130);
    p.sun = rgb(255, 220, 150);
    p.cloud = rgb(255, 215, 170);
    p.light = rgb(255, 225, 180);
    p.haze = 0.5;
  } else if (s.time_of_day == "sunset") {
    p.sky_top = rgb(70, 50, 120);
    p.sky_horizon = rgb(250, 120, 60);
    p.sun = rgb(255, 170, 80);
    p.cloud = rgb(230, 110, 110);
    p.light = rgb(240, 150, 110);
    p.brightness = 0.8;
    p.haze = 0.55;
  } else if (s.time_of_day == "dusk") {
    p.sky_top = rgb(25, 30, 80);
    p.sky_horizon = rgb(150, 100, 140);
    p.sun = rgb(220, 150, 150);
    p.cloud = rgb(120, 90, 120);
    p.light = rgb(150, 130, 170);
    p.brightness = 0.55;
    p.haze = 0.5;
  } else if (s.time_of_day == "night") {
    p.sky_top = rgb(5, 8, 25);
    p.sky_horizon = rgb(30, 40, 80);
    p.sun = rgb(230, 230, 210);
    p.cloud = rgb(50, 55, 75);
    p.light = rgb(90, 100, 150);
    p.brightness = 0.35;
    p.haze = 0.3;
    p.stars = true;
  } else {  // overcast
    p.sky_top = rgb(130, 135, 145);
    p.sky_horizon = rgb(190, 192, 195);
    p.sun = rgb(200, 200, 200);
    p.cloud = rgb(170, 172, 178);
    p.light = rgb(200, 205, 210);
    p.brightness = 0.8;
    p.haze = 0.6;
  }
  if (s.season == "spring") {
    p.grass = rgb(110, 180, 70);
    p.field = rgb(200, 200, 90);
    p.tree = rgb(80, 150, 60);
    p.tree_dark = rgb(40, 90, 40);
  } else if (s.season == "summer") {
    p.grass = rgb(70, 140, 50);
    p.field = rgb(210, 180, 80);
    p.tree = rgb(40, 110, 40);
    p.tree_dark = rgb(20, 70, 30);
  } else if (s.season == "autumn") {
    p.grass = rgb(150, 140, 60);
    p.field = rgb(190, 130, 60);
    p.tree = rgb(210, 110, 30);
    p.tree_dark = rgb(140, 60, 25);
  } else {  // winter: snow on the ground, bare dark trees
    p.grass = rgb(225, 230, 238);
    p.field = rgb(235, 238, 245);
    p.tree = rgb(70, 80, 70);
    p.tree_dark = rgb(40, 45, 45);
  }
  p.earth = rgb(120, 90, 60);
  p.sand = rgb(220, 200, 150);
  p.rock = rgb(125, 120, 115);
  p.mountain = mix(rgb(100, 105, 120), rgb(120, 100, 85), uniform(rng, 0, 1));
  p.snow = rgb(245, 247, 252);
  p.water_tint = mix(rgb(30, 80, 110), rgb(40, 110, 100), uniform(rng, 0, 1));
  // Palette variety within a style.
  for (cv::Vec3f* c : {&p.grass, &p.field, &p.tree, &p.mountain, &p.earth, &p.rock, &p.water_tint})
    *c = jitter(*c, rng, 0.06);
  return p;
}

// Paints `color` (scaled by per-pixel `shade`) and `label` where `mask` is set.
void paint(cv::Mat& image, cv::Mat& labels, const cv::Mat& mask, uint8_t label, const cv::Vec3f& color,
           const cv::Mat& shade) {
  for (int y = 0; y < image.rows; ++y) {
    const uint8_t* m = mask.ptr<uint8_t>(y);
    cv::Vec3f* px = image.ptr<cv::Vec3f>(y);
    uint8_t* l = labels.ptr<uint8_t>(y);
    const float* s = shade.empty() ? nullptr : shade.ptr<float>(y);
    for (int x = 0; x < image.cols; ++x)
      if (m[x]) {
        px[x] = s ? color * s[x] : color;
        l[x] = label;
      }
  }
}

cv::Mat region_below(const std::vector<double>& line, int height) {
  const int width = static_cast<int>(line.size());
  std::vector<cv::Point> poly;
  for (int x = 0; x < width; ++x) poly.emplace_back(x, static_cast<int>(std::lround(line[x])));
  poly.emplace_back(width - 1, height);
  poly.emplace_back(0, height);
  cv::Mat mask = cv::Mat::zeros(height, width, CV_8U);
  cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{poly}, cv::Scalar(1));
  return mask;
}

}  // namespace

Landscape generate_landscape(uint64_t seed, int width, int height) {
  Rng rng(seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull);
  static const char* kTimes[] = {"day", "day", "golden", "sunset", "dusk", "night", "overcast"};
  static const char* kSeasons[] = {"spring", "summer", "summer", "autumn", "winter"};
  Landscape out;
  out.style = {kTimes[uniform_int(rng, 0, 6)], kSeasons[uniform_int(rng, 0, 4)]};
  const Palette pal = make_palette(rng, out.style);
  const int W = width, H = height;
  cv::Mat img(H, W, CV_32FC3), labels(H, W, CV_8U, cv::Scalar(kSky));

  // Sky: vertical gradient, clouds from fractal noise, stars at night, a sun or moon disc.
  const double horizon = H * uniform(rng, 0.38, 0.62);
  const cv::Mat clouds = fractal_noise(rng, W, H, 4, 5);
  const double cloudiness = out.style.time_of_day == "overcast" ? uniform(rng, 0.5, 0.9) : uniform(rng, 0.0, 0.6);
  const double sun_x = uniform(rng, 0.1, 0.9) * W, sun_y = horizon * uniform(rng, 0.25, 0.85),
               sun_r = uniform(rng, 0.02, 0.05) * W;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const double t = std::clamp(y / std::max(horizon, 1.0), 0.0, 1.0);
      cv::Vec3f c = mix(pal.sky_top, pal.sky_horizon, std::pow(t, 1.5));
      const double glow = std::exp(-std::hypot(x - sun_x, y - sun_y) / (sun_r * 6));
      c = mix(c, pal.sun, 0.5 * glow);
      if (std::hypot(x - sun_x, y - sun_y) < sun_r && out.style.time_of_day != "overcast") c = pal.sun;
      const double cl = std::clamp((clouds.at<float>(y, x) - (1 - cloudiness)) * 3.0, 0.0, 1.0) * (1 - 0.6 * t);
      c = mix(c, pal.cloud, cl);
      if (pal.stars && chance(rng, 0.002)) c = rgb(240, 240, 255);
      img.at<cv::Vec3f>(y, x) = c;
    }

  auto shade_noise = [&](int cells, double lo, double hi) {
    cv::Mat n = fractal_noise(rng, W, H, cells, 4);
    return n * (hi - lo) + lo;
  };
  const cv::Mat none;

  // Far mountains (hazy), with snow caps in cold or high scenes.
  const int ranges = uniform_int(rng, 0, 2);
  for (int r = 0; r < ranges; ++r) {
    const double base = horizon + uniform(rng, -0.02, 0.05) * H;
    const auto line = ridge(rng, W, base, H * uniform(rng, 0.12, 0.3) * (r == 0 ? 1.0 : 0.7), 0.55);
    cv::Mat mask = region_below(line, H);
    const double haze = pal.haze * (r == 0 ? 1.0 : 0.6);
    const cv::Vec3f color = mix(pal.mountain, pal.sky_horizon, haze);
    paint(img, labels, mask, kMountain, color, shade_noise(16, 0.8, 1.15));
    if (out.style.season == "winter" || chance(rng, 0.4)) {
      // Snow caps: the part of the range above a snow altitude.
      const double top = *std::min_element(line.begin(), line.end());
      const double snow_altitude = top + (base - top) * uniform(rng, 0.25, 0.45);
      cv::Mat snow = mask & ~region_below(std::vector<double>(W, snow_altitude), H);
      paint(img, labels, snow, kMountain, mix(pal.snow, pal.sky_horizon, haze * 0.5), shade_noise(24, 0.85, 1.05));
    }
  }
  // Hills: softer, greener (or snowy) ridges closer in.
  if (chance(rng, 0.7)) {
    const auto line = ridge(rng, W, horizon + uniform(rng, 0.0, 0.06) * H, H * uniform(rng, 0.05, 0.15), 0.4);
    paint(img, labels, region_below(line, H), kHill, mix(pal.grass, pal.sky_horizon, pal.haze * 0.4) * 0.85f,
          shade_noise(12, 0.8, 1.1));
  }

  // Water at the horizon (sea, lake) or a river, reflecting the sky; otherwise land continues.
  const int water_kind = uniform_int(rng, 0, 3);  // 0 sea, 1 lake, 2 river, 3 none
  const double shore = horizon + uniform(rng, 0.08, 0.22) * H;
  if (water_kind == 0 || water_kind == 1) {
    cv::Mat mask = region_below(std::vector<double>(W, horizon + (water_kind == 1 ? 0.02 * H : 0)), H);
    mask &= ~region_below(ridge(rng, W, shore, H * 0.04, 0.5), H);
    const cv::Mat ripples = fractal_noise(rng, W, H, 48, 2);
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x)
        if (mask.at<uint8_t>(y, x)) {
          const int mirror = std::clamp(static_cast<int>(2 * horizon - y), 0, H - 1);
          const cv::Vec3f sky = img.at<cv::Vec3f>(mirror, x);  // what stands above the water, mirrored
          cv::Vec3f c = mix(sky, pal.water_tint, 0.55) * static_cast<float>(0.85 + 0.3 * ripples.at<float>(y, x));
          img.at<cv::Vec3f>(y, x) = c;
          labels.at<uint8_t>(y, x) = water_kind == 0 ? kSea : kLake;
        }
    if (water_kind == 0 && chance(rng, 0.6)) {  // a beach
      const auto beach = ridge(rng, W, shore + 0.05 * H, H * 0.03, 0.5);
      cv::Mat sand = region_below(ridge(rng, W, shore, H * 0.02, 0.5), H) & ~region_below(beach, H);
      paint(img, labels, sand, kSand, pal.sand, shade_noise(64, 0.85, 1.05));
    }
  }

  // Foreground ground: grass, field or earth bands below the shore line.
  const uint8_t ground_class = chance(rng, 0.6) ? kGrass : (chance(rng, 0.5) ? kField : kEarth);
  const cv::Vec3f ground_color = ground_class == kGrass ? pal.grass : ground_class == kField ? pal.field : pal.earth;
  const auto ground_line = ridge(rng, W, water_kind <= 1 ? shore + 0.06 * H : horizon + 0.05 * H, H * 0.05, 0.5);
  paint(img, labels, region_below(ground_line, H), ground_class, ground_color, shade_noise(32, 0.75, 1.15));
  if (water_kind == 2) {  // a river winding toward the viewer
    cv::Mat river = cv::Mat::zeros(H, W, CV_8U);
    double cx = uniform(rng, 0.3, 0.7) * W;
    const int top = static_cast<int>(ground_line[static_cast<int>(cx)]);
    for (int y = std::max(top, 0); y < H; ++y) {
      cx += uniform(rng, -2.0, 2.0);
      const double half = 2 + (y - top) * uniform(rng, 0.25, 0.35);
      cv::line(river, cv::Point(static_cast<int>(cx - half), y), cv::Point(static_cast<int>(cx + half), y),
               cv::Scalar(1));
    }
    river &= region_below(ground_line, H);
    paint(img, labels, river, kRiver, mix(pal.sky_horizon, pal.water_tint, 0.6), shade_noise(48, 0.85, 1.1));
  }

  // Trees: conifers (triangles) or broadleaf (ellipses) standing on the ground line, far ones smaller.
  const int trees = chance(rng, 0.8) ? uniform_int(rng, 3, 25) : 0;
  for (int i = 0; i < trees; ++i) {
    const int x = uniform_int(rng, 0, W - 1);
    const double depth = uniform(rng, 0, 1);  // 0 far, 1 near
    const int base = std::min(H - 1, static_cast<int>(ground_line[x] + depth * (H - ground_line[x]) * 0.6));
    const double size = H * (0.05 + 0.2 * depth * depth) * uniform(rng, 0.7, 1.3);
    cv::Mat mask = cv::Mat::zeros(H, W, CV_8U);
    if (chance(rng, 0.5)) {
      std::vector<cv::Point> tri{{x, static_cast<int>(base - size)},
                                 {static_cast<int>(x - size * 0.3), base},
                                 {static_cast<int>(x + size * 0.3), base}};
      cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{tri}, cv::Scalar(1));
    } else {
      cv::ellipse(mask, cv::Point(x, static_cast<int>(base - size * 0.55)),
                  cv::Size(static_cast<int>(size * 0.35), static_cast<int>(size * 0.45)), 0, 0, 360, cv::Scalar(1),
                  cv::FILLED);
      cv::line(mask, cv::Point(x, static_cast<int>(base - size * 0.2)), cv::Point(x, base), cv::Scalar(1),
               std::max(1, static_cast<int>(size * 0.06)));
    }
    paint(img, labels, mask, kTree, mix(pal.tree_dark, pal.tree, uniform(rng, 0.2, 1.0)), shade_noise(40, 0.7, 1.15));
  }
  // Rocks in the foreground.
  const int rocks = chance(rng, 0.5) ? uniform_int(rng, 1, 4) : 0;
  for (int i = 0; i < rocks; ++i) {
    const int cx = uniform_int(rng, 0, W - 1), cy = uniform_int(rng, static_cast<int>(H * 0.75), H - 1);
    const double r = H * uniform(rng, 0.03, 0.09);
    std::vector<cv::Point> poly;
    for (int k = 0; k < 9; ++k) {
      const double a = M_PI * k / 8.0, rr = r * uniform(rng, 0.6, 1.1);
      poly.emplace_back(static_cast<int>(cx + rr * std::cos(a) * 1.4), static_cast<int>(cy - rr * std::sin(a)));
    }
    cv::Mat mask = cv::Mat::zeros(H, W, CV_8U);
    cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{poly}, cv::Scalar(1));
    paint(img, labels, mask, kRock, pal.rock, shade_noise(48, 0.65, 1.1));
  }

  // Global light: tint and brightness of the time of day, a little grain.
  cv::Mat grain = fractal_noise(rng, W, H, W / 2, 1);
  out.image.create(H, W, CV_8UC3);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      cv::Vec3f c = img.at<cv::Vec3f>(y, x);
      if (labels.at<uint8_t>(y, x) != kSky) c = c.mul(pal.light) * static_cast<float>(pal.brightness);
      c *= static_cast<float>(0.97 + 0.06 * grain.at<float>(y, x));
      for (int k = 0; k < 3; ++k) out.image.at<cv::Vec3b>(y, x)[k] = cv::saturate_cast<uint8_t>(c[k] * 255.0f);
    }
  out.labels = labels;
  return out;
}

}  // namespace iidm
