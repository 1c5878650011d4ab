#pragma once
// A procedural landscape generator: images with exact label maps in the competition's class ids,
// in varied styles (time of day, season, palette, weather), so that the style reference matters.
// It is the project's own data for tests, demo models and evaluation. Deterministic by seed.
#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace iidm {

// The 29 classes of the 2023 Jittor landscape track, value = index.
extern const std::vector<std::string> kLandscapeClasses;
// A colour per class that says what it is (sky blue, tree green, sand beige...): the editor's
// palette, which people paint with. 8-bit RGB, by id.
extern const std::vector<std::array<uint8_t, 3>> kLandscapeClassColors;
enum LandscapeClass : uint8_t {
  kMountain = 0,
  kSky = 1,
  kWater = 2,
  kSea = 3,
  kRock = 4,
  kTree = 5,
  kEarth = 6,
  kHill = 7,
  kRiver = 8,
  kSand = 9,
  kLand = 10,
  kBuilding = 11,
  kGrass = 12,
  kPlant = 13,
  kPerson = 14,
  kBoat = 15,
  kWaterfall = 16,
  kWall = 17,
  kPier = 18,
  kPath = 19,
  kLake = 20,
  kBridge = 21,
  kField = 22,
  kRoad = 23,
  kRailing = 24,
  kFence = 25,
  kShip = 26,
  kHouse = 27,
  kOther = 28
};

struct LandscapeStyle {
  std::string time_of_day;  // day, golden, sunset, dusk, night, overcast
  std::string season;       // spring, summer, autumn, winter
};

struct Landscape {
  cv::Mat image;   // CV_8UC3, RGB
  cv::Mat labels;  // CV_8UC1, class ids
  LandscapeStyle style;
};

// One scene of width x height from `seed`. The same seed always gives the same bytes.
Landscape generate_landscape(uint64_t seed, int width, int height);

}  // namespace iidm
