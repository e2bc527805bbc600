// The comparison plot: pareto_front agrees with a brute-force O(n^2) dominance check on random
// point sets full of ties, duplicates and non-finite points, and on hand cases; the SVG is
// well-formed XML (checked by a small independent parser below), holds one marker per finite row
// in each panel, rings exactly the non-dominated rows, escapes XML specials and never writes a
// non-finite coordinate.
#include <slim/pipeline/plot.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using slim::pipeline::MethodResult;
using slim::pipeline::Point;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// The definition, checked pairwise: i is on the front iff finite and no finite j dominates it,
// where identical points count as dominated by the one with the lower index.
std::vector<std::size_t> brute_force_front(const std::vector<Point>& p) {
  auto finite = [&](std::size_t i) { return std::isfinite(p[i].x) && std::isfinite(p[i].y); };
  std::vector<std::size_t> front;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (!finite(i)) continue;
    bool dominated = false;
    for (std::size_t j = 0; j < p.size() && !dominated; ++j) {
      if (j == i || !finite(j)) continue;
      const bool weakly = p[j].x <= p[i].x && p[j].y <= p[i].y;
      const bool strictly = p[j].x < p[i].x || p[j].y < p[i].y;
      dominated = weakly && (strictly || j < i);
    }
    if (!dominated) front.push_back(i);
  }
  std::sort(front.begin(), front.end(), [&](std::size_t a, std::size_t b) {
    return p[a].x != p[b].x ? p[a].x < p[b].x : a < b;
  });
  return front;
}

TEST(ParetoFront, HandCases) {
  using slim::pipeline::pareto_front;
  using V = std::vector<std::size_t>;
  EXPECT_EQ(pareto_front({}), V{});
  EXPECT_EQ(pareto_front({{1, 1}}), V{0});
  EXPECT_EQ(pareto_front({{1, 1}, {1, 1}, {1, 1}}), V{0});  // duplicates: the first only
  EXPECT_EQ(pareto_front({{2, 2}, {1, 1}, {1, 1}}), V{1});  // ... even when not first overall
  EXPECT_EQ(pareto_front({{1, 2}, {1, 1}}), V{1});          // same x: the lower y
  EXPECT_EQ(pareto_front({{1, 1}, {2, 1}}), V{0});          // same y: the lower x
  EXPECT_EQ(pareto_front({{3, 1}, {1, 3}, {2, 2}, {3, 3}}), (V{1, 2, 0}));  // ordered by x
  EXPECT_EQ(pareto_front({{kNaN, 0}, {1, 1}, {0, kInf}, {-kInf, 0}}), V{1});
  EXPECT_EQ(pareto_front({{kNaN, kNaN}}), V{});
  EXPECT_EQ(pareto_front({{-1, 5}, {0, -2}, {-1, 5}}), (V{0, 1}));
}

TEST(ParetoFront, MatchesBruteForceOnRandomSets) {
  std::mt19937_64 rng(2024);
  for (int trial = 0; trial < 400; ++trial) {
    const std::size_t n = rng() % 40;
    const int grid = 1 + static_cast<int>(rng() % 8);  // small grids force ties and duplicates
    std::vector<Point> points(n);
    for (Point& p : points) {
      p.x = static_cast<double>(rng() % static_cast<unsigned>(grid));
      p.y = static_cast<double>(rng() % static_cast<unsigned>(grid));
      if (trial % 2 == 1) {
        p.x += std::uniform_real_distribution<double>(-0.5, 0.5)(rng);
        p.y += std::uniform_real_distribution<double>(-0.5, 0.5)(rng);
      }
      const auto special = rng() % 20;
      if (special == 0) p.x = kNaN;
      if (special == 1) p.y = kInf;
      if (special == 2) p.x = -kInf;
    }
    EXPECT_EQ(slim::pipeline::pareto_front(points), brute_force_front(points)) << "trial " << trial;
  }
}

// A minimal XML reader: elements with attributes and text, entity references decoded. Throws
// std::runtime_error on anything not well-formed (unbalanced tags, unquoted or duplicated
// attributes, a raw '<' or '&' in text, unknown entities).
struct Element {
  std::string name;
  std::map<std::string, std::string> attributes;
  std::string text;  // decoded character data directly inside the element
};

std::string decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') throw std::runtime_error("raw '<' in character data");
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    const std::size_t end = s.find(';', i);
    if (end == std::string::npos) throw std::runtime_error("unterminated entity");
    const std::string entity = s.substr(i + 1, end - i - 1);
    static const std::map<std::string, char> known = {
        {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    const auto it = known.find(entity);
    if (it == known.end()) throw std::runtime_error("unknown entity &" + entity + ";");
    out += it->second;
    i = end;
  }
  return out;
}

std::vector<Element> parse_xml(const std::string& xml) {
  std::vector<Element> elements;
  std::vector<std::size_t> open;
  std::size_t i = 0;
  if (xml.compare(0, 5, "<?xml") == 0) i = xml.find("?>") + 2;
  while (i < xml.size()) {
    if (xml[i] != '<') {
      const std::size_t next = xml.find('<', i);
      const std::string text = decode(xml.substr(i, next - i));
      if (open.empty()) {
        if (text.find_first_not_of(" \n\r\t") != std::string::npos)
          throw std::runtime_error("text outside the root element");
      } else {
        elements[open.back()].text += text;
      }
      i = next == std::string::npos ? xml.size() : next;
      continue;
    }
    const std::size_t close = xml.find('>', i);
    if (close == std::string::npos) throw std::runtime_error("unterminated tag");
    std::string tag = xml.substr(i + 1, close - i - 1);
    i = close + 1;
    if (tag[0] == '/') {
      if (open.empty() || elements[open.back()].name != tag.substr(1))
        throw std::runtime_error("mismatched </" + tag.substr(1) + ">");
      open.pop_back();
      continue;
    }
    const bool self_closing = tag.back() == '/';
    if (self_closing) tag.pop_back();
    Element e;
    std::size_t k = 0;
    while (k < tag.size() && !std::isspace(static_cast<unsigned char>(tag[k]))) ++k;
    e.name = tag.substr(0, k);
    if (e.name.empty()) throw std::runtime_error("empty tag name");
    while (true) {
      while (k < tag.size() && std::isspace(static_cast<unsigned char>(tag[k]))) ++k;
      if (k == tag.size()) break;
      const std::size_t eq = tag.find('=', k);
      if (eq == std::string::npos || eq + 1 >= tag.size() || tag[eq + 1] != '"')
        throw std::runtime_error("attribute without a quoted value in <" + e.name + ">");
      const std::string key = tag.substr(k, eq - k);
      const std::size_t end = tag.find('"', eq + 2);
      if (end == std::string::npos) throw std::runtime_error("unterminated attribute value");
      if (!e.attributes.emplace(key, decode(tag.substr(eq + 2, end - eq - 2))).second)
        throw std::runtime_error("duplicate attribute " + key);
      k = end + 1;
    }
    if (open.empty() && !elements.empty()) throw std::runtime_error("second root element");
    elements.push_back(e);
    if (!self_closing) open.push_back(elements.size() - 1);
  }
  if (!open.empty()) throw std::runtime_error("unclosed <" + elements[open.back()].name + ">");
  return elements;
}

MethodResult row(const std::string& name, const std::string& family, double size, double bpb,
                 double latency, bool kernel = true) {
  MethodResult r;
  r.name = name;
  r.family = family;
  r.size_mb = size;
  r.bits_per_byte = bpb;
  r.latency_ms = latency;
  r.has_kernel = kernel;
  return r;
}

// The README's `slim compare` table on the default model.
std::vector<MethodResult> readme_table() {
  return {row("fp32 (original)", "baseline", 3.282, 2.4990, 0.063),
          row("GPTQ int3 g32 asym", "quantization", 0.490, 2.5099, 0.066, false),
          row("RTN int3 g32 asym", "quantization", 0.490, 2.5325, 0.067, false),
          row("NF4 b64", "quantization", 0.579, 2.5073, 0.059, false),
          row("GPTQ int4 g32 asym", "quantization", 0.628, 2.5020, 0.137),
          row("RTN int4 g32 asym", "quantization", 0.628, 2.5047, 0.136),
          row("AWQ int4 g32 asym", "quantization", 0.647, 2.4994, 0.141),
          row("RTN int8 per-channel sym", "quantization", 1.005, 2.4997, 0.093),
          row("SVD-LLM 50% params", "low-rank", 1.708, 2.7193, 0.045),
          row("SVD 50% params", "low-rank", 1.708, 2.8319, 0.045),
          row("SparseGPT 2:4", "pruning", 1.808, 2.6083, 0.104),
          row("Wanda 2:4", "pruning", 1.808, 2.7742, 0.105),
          row("magnitude 2:4", "pruning", 1.808, 2.8371, 0.104),
          row("SparseGPT 50%", "pruning", 2.517, 2.5514, 0.226),
          row("magnitude 50%", "pruning", 2.517, 2.5898, 0.241),
          row("Wanda 50%", "pruning", 2.517, 2.6215, 0.267)};
}

// Row indices of the elements whose id is "<prefix><row>".
std::set<std::size_t> ids_with_prefix(const std::vector<Element>& elements,
                                      const std::string& prefix) {
  std::set<std::size_t> rows;
  for (const Element& e : elements) {
    const auto it = e.attributes.find("id");
    if (it != e.attributes.end() && it->second.rfind(prefix, 0) == 0) {
      const std::size_t index = std::stoul(it->second.substr(prefix.size()));
      EXPECT_TRUE(rows.insert(index).second) << "duplicate " << it->second;
    }
  }
  return rows;
}

// Checks markers and rings of one panel against the rows and the brute-force front.
void check_panel(const std::vector<Element>& elements, const std::vector<MethodResult>& rows,
                 const std::string& panel, double MethodResult::*x_field) {
  SCOPED_TRACE(panel);
  std::vector<Point> points;
  std::set<std::size_t> finite;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double loss = rows[i].bits_per_byte - rows[0].bits_per_byte;
    points.push_back({rows[i].*x_field, loss});
    if (std::isfinite(points.back().x) && std::isfinite(loss)) finite.insert(i);
  }
  const std::set<std::size_t> markers = ids_with_prefix(elements, panel + "-marker-");
  EXPECT_EQ(markers, finite);
  std::size_t marker_circles = 0;
  for (const Element& e : elements) {
    if (e.name == "circle" && e.attributes.count("class") && e.attributes.at("class") == "marker" &&
        e.attributes.at("id").rfind(panel + "-", 0) == 0)
      ++marker_circles;
  }
  EXPECT_EQ(marker_circles, finite.size());
  const std::vector<std::size_t> front = brute_force_front(points);
  EXPECT_EQ(ids_with_prefix(elements, panel + "-front-"),
            std::set<std::size_t>(front.begin(), front.end()));
}

void expect_finite_coordinates(const std::vector<Element>& elements) {
  for (const Element& e : elements) {
    for (const auto& [key, value] : e.attributes) {
      std::string lower = value;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (key == "id" || key == "class") continue;
      EXPECT_EQ(lower.find("nan"), std::string::npos) << e.name << " " << key << "=" << value;
      EXPECT_EQ(lower.find("inf"), std::string::npos) << e.name << " " << key << "=" << value;
    }
  }
}

TEST(ComparisonSvg, TheReadmeTableGivesOneMarkerPerRowAndTheTrueFronts) {
  const auto rows = readme_table();
  const std::string svg = slim::pipeline::comparison_svg(rows);
  const std::vector<Element> elements = parse_xml(svg);
  ASSERT_EQ(elements.front().name, "svg");
  EXPECT_EQ(elements.front().attributes.at("xmlns"), "http://www.w3.org/2000/svg");
  check_panel(elements, rows, "size", &MethodResult::size_mb);
  check_panel(elements, rows, "latency", &MethodResult::latency_ms);
  expect_finite_coordinates(elements);
  // Self-contained: nothing is fetched or run.
  EXPECT_EQ(svg.find("<script"), std::string::npos);
  EXPECT_EQ(svg.find("href"), std::string::npos);
  EXPECT_EQ(svg.find("@import"), std::string::npos);
  EXPECT_EQ(svg.find("url("), std::string::npos);
  // Every method is labelled.
  for (const MethodResult& r : rows) {
    const auto labelled = std::count_if(elements.begin(), elements.end(), [&](const Element& e) {
      return e.name == "text" && e.text == r.name;
    });
    EXPECT_EQ(labelled, 2) << r.name;
  }
}

TEST(ComparisonSvg, EscapesXmlSpecialCharactersInNames) {
  auto rows = readme_table();
  const std::string nasty = "a<b> & \"c\" 'd' &amp;";
  rows.push_back(row(nasty, "weird & <family>", 1.0, 2.55, 0.1));
  const std::string svg = slim::pipeline::comparison_svg(rows);
  EXPECT_EQ(svg.find(nasty), std::string::npos);
  EXPECT_EQ(svg.find("<family>"), std::string::npos);
  const std::vector<Element> elements = parse_xml(svg);  // throws on a raw '<' or '&'
  const auto labelled = std::count_if(elements.begin(), elements.end(), [&](const Element& e) {
    return e.name == "text" && e.text == nasty;
  });
  EXPECT_EQ(labelled, 2);
  check_panel(elements, rows, "size", &MethodResult::size_mb);
  check_panel(elements, rows, "latency", &MethodResult::latency_ms);
}

TEST(ComparisonSvg, NonFiniteRowsAreLeftOutOfTheirPanelAndNamedInANote) {
  auto rows = readme_table();
  rows.push_back(row("broken latency", "pruning", 1.1, 2.6, kNaN));
  rows.push_back(row("broken size", "low-rank", kInf, 2.6, 0.1));
  rows.push_back(row("diverged", "quantization", 0.6, kNaN, 0.1));
  const std::string svg = slim::pipeline::comparison_svg(rows);
  const std::vector<Element> elements = parse_xml(svg);
  check_panel(elements, rows, "size", &MethodResult::size_mb);
  check_panel(elements, rows, "latency", &MethodResult::latency_ms);
  expect_finite_coordinates(elements);
  const auto size_markers = ids_with_prefix(elements, "size-marker-");
  EXPECT_EQ(size_markers.count(rows.size() - 3), 1u);  // broken latency still has a size
  EXPECT_EQ(size_markers.count(rows.size() - 2), 0u);
  EXPECT_EQ(size_markers.count(rows.size() - 1), 0u);
  std::string notes;
  for (const Element& e : elements) notes += e.text + "\n";
  for (const char* name :
       {"broken latency (latency)", "broken size (size)", "diverged (bits/byte)"})
    EXPECT_NE(notes.find(name), std::string::npos) << name;
}

TEST(ComparisonSvg, DegenerateTablesStillGiveValidPictures) {
  // The baseline alone; every value equal; the baseline itself non-finite.
  for (const auto& rows : std::vector<std::vector<MethodResult>>{
           {row("fp32 (original)", "baseline", 3.0, 2.5, 0.06)},
           {row("fp32 (original)", "baseline", 1.0, 2.5, 0.1), row("same", "other", 1.0, 2.5, 0.1)},
           {row("fp32 (original)", "baseline", 3.0, kNaN, 0.06),
            row("q", "quantization", 1, 2, 1)}}) {
    const std::string svg = slim::pipeline::comparison_svg(rows);
    const std::vector<Element> elements = parse_xml(svg);
    check_panel(elements, rows, "size", &MethodResult::size_mb);
    check_panel(elements, rows, "latency", &MethodResult::latency_ms);
    expect_finite_coordinates(elements);
  }
  EXPECT_THROW(slim::pipeline::comparison_svg({}), slim::ArgumentError);
  slim::pipeline::PlotOptions tiny;
  tiny.panel_width = 10;
  EXPECT_THROW(slim::pipeline::comparison_svg(readme_table(), tiny), slim::ArgumentError);
}

TEST(ComparisonSvg, WritesTheFileAtomically) {
  const std::string path = ::testing::TempDir() + "slim_plot_test.svg";
  slim::pipeline::write_comparison_svg(path, readme_table());
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  EXPECT_EQ(contents.str(), slim::pipeline::comparison_svg(readme_table()));
  std::remove(path.c_str());
  EXPECT_THROW(slim::pipeline::write_comparison_svg(
                   ::testing::TempDir() + "no_such_folder_slim/plot.svg", readme_table()),
               slim::IoError);
}

}  // namespace
