// The picture of `slim compare`: accuracy loss (validation bits/byte above the uncompressed
// baseline's) against model size and against decode latency, one marker per method coloured by
// family, with each panel's Pareto front (non-dominated set, both axes minimised) drawn as a
// staircase. The output is a self-contained SVG 1.1 document: no scripts, no external fonts,
// images or stylesheets; text uses the generic `sans-serif` family.
#pragma once

#include <slim/core/error.hpp>
#include <slim/io/file.hpp>
#include <slim/pipeline/compare.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace slim::pipeline {

struct Point {
  double x = 0.0;
  double y = 0.0;
};

// Indices of the points on the Pareto front when both coordinates are minimised, ordered by
// increasing x (so y decreases along the result). Point i is on the front when it is finite and
// no other finite point j dominates it: x_j <= x_i and y_j <= y_i with at least one strict.
// Among points with identical coordinates only the lowest index is on the front (the later
// copies count as dominated by it), so the answer never depends on sort stability. Points with a
// NaN or infinite coordinate are never on the front and dominate nothing. O(n log n).
inline std::vector<std::size_t> pareto_front(const std::vector<Point>& points) {
  std::vector<std::size_t> order;
  order.reserve(points.size());
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (std::isfinite(points[i].x) && std::isfinite(points[i].y)) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (points[a].x != points[b].x) return points[a].x < points[b].x;
    if (points[a].y != points[b].y) return points[a].y < points[b].y;
    return a < b;
  });
  // Sweeping by increasing x (then y, then index), a point is on the front exactly when its y is
  // strictly below every y seen before it.
  std::vector<std::size_t> front;
  double best_y = std::numeric_limits<double>::infinity();
  for (std::size_t i : order) {
    if (points[i].y < best_y) {
      front.push_back(i);
      best_y = points[i].y;
    }
  }
  return front;
}

struct PlotOptions {
  std::string title = "slim compare: accuracy loss against model size and decode latency";
  double panel_width = 560.0;   // pixels per panel, axes and labels included
  double panel_height = 440.0;  // pixels of a panel's plot area plus its axes
  double font_size = 11.0;      // method labels; titles and axis labels scale from it
};

namespace detail {

// Text escaped for XML character data and attribute values. Control characters that XML 1.0
// forbids become '?'.
inline std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r')
          out += '?';
        else
          out += c;
    }
  }
  return out;
}

// A coordinate with one decimal (SVG user units are pixels; finer is invisible).
inline std::string px(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f", v);
  return buffer;
}

inline std::string fixed(double v, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
  return buffer;
}

// Characters of a UTF-8 string (continuation bytes not counted), for text width estimates.
inline std::size_t utf8_length(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// Splits each text at spaces into lines of at most `width` characters (longer words stay whole).
inline std::vector<std::string> wrap_lines(const std::vector<std::string>& texts,
                                           std::size_t width) {
  std::vector<std::string> lines;
  for (const std::string& text : texts) {
    std::istringstream words(text);
    std::string word;
    std::string line;
    while (words >> word) {
      if (!line.empty() && utf8_length(line) + 1 + utf8_length(word) > width) {
        lines.push_back(line);
        line.clear();
      }
      line += (line.empty() ? "" : " ") + word;
    }
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

struct Family {
  const char* name;
  const char* colour;
};

// Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
inline const std::vector<Family>& families() {
  static const std::vector<Family> table = {{"baseline", "#000000"},
                                            {"quantization", "#0072B2"},
                                            {"pruning", "#D55E00"},
                                            {"low-rank", "#009E73"},
                                            {"other", "#CC79A7"}};
  return table;
}

inline std::size_t family_index(const std::string& family) {
  const auto& table = families();
  for (std::size_t i = 0; i + 1 < table.size(); ++i) {
    if (family == table[i].name) return i;
  }
  return table.size() - 1;
}

// A linear axis over [lo, hi] mapped onto the pixel interval [p0, p1] (p1 < p0 for a y axis),
// with ticks at the multiples of `step` (1, 2 or 5 times a power of ten) inside the range.
struct Axis {
  double lo = 0.0;
  double hi = 1.0;
  double step = 0.2;
  double p0 = 0.0;
  double p1 = 1.0;

  double map(double v) const { return p0 + (v - lo) / (hi - lo) * (p1 - p0); }
  int decimals() const {
    return std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
  }
  std::vector<double> ticks() const {
    std::vector<double> t;
    const double first = std::ceil(lo / step - 1e-9);
    for (int k = 0; k <= 100; ++k) {
      const double v = (first + k) * step;
      if (v > hi + step * 1e-9) break;
      t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
    }
    return t;
  }
};

// Values must be finite and non-empty; `include` is a value the range must contain (NaN: none).
inline Axis make_axis(const std::vector<double>& values, double include, double p0, double p1) {
  double lo = *std::min_element(values.begin(), values.end());
  double hi = *std::max_element(values.begin(), values.end());
  if (std::isfinite(include)) {
    lo = std::min(lo, include);
    hi = std::max(hi, include);
  }
  const double span = hi - lo;
  if (!(span > 0.0) || !std::isfinite(span)) {
    const double pad = lo != 0.0 && std::isfinite(lo) ? std::abs(lo) * 0.1 : 1.0;
    lo -= pad;
    hi += pad;
  } else {
    lo -= 0.05 * span;
    hi += 0.05 * span;
  }
  Axis a;
  const double raw = (hi - lo) / 5.0;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double normalised = raw / magnitude;
  a.step = magnitude * (normalised < 1.5   ? 1.0
                        : normalised < 3.0 ? 2.0
                        : normalised < 7.0 ? 5.0
                                           : 10.0);
  a.lo = lo;
  a.hi = hi;
  a.p0 = p0;
  a.p1 = p1;
  return a;
}

struct Box {
  double x0, y0, x1, y1;
  double overlap(const Box& o) const {
    const double w = std::min(x1, o.x1) - std::max(x0, o.x0);
    const double h = std::min(y1, o.y1) - std::max(y0, o.y0);
    return w > 0.0 && h > 0.0 ? w * h : 0.0;
  }
};

struct PlacedLabel {
  double x = 0.0;  // text anchor position
  double y = 0.0;  // baseline
  const char* anchor = "start";
  bool leader = false;  // moved away from its marker: draw a thin line to it
  Box box{};
};

// Greedy label placement: every label tries positions around its marker, nearest first, and
// takes the first that overlaps no marker, no placed label, no line and stays inside `area`;
// when none does, the one with the least weighted overlap (earliest on ties).
inline std::vector<PlacedLabel> place_labels(const std::vector<Point>& markers,
                                             const std::vector<std::string>& labels,
                                             const std::vector<std::size_t>& order,
                                             const std::vector<Box>& lines, const Box& area,
                                             double font_size, double marker_radius) {
  const double char_width = 0.56 * font_size;
  const double ascent = 0.75 * font_size;
  const double descent = 0.25 * font_size;
  const double gap = marker_radius + 4.0;
  std::vector<Box> obstacles;
  for (const Point& m : markers) {
    obstacles.push_back({m.x - marker_radius - 2.0, m.y - marker_radius - 2.0,
                         m.x + marker_radius + 2.0, m.y + marker_radius + 2.0});
  }
  struct Candidate {
    double dx, dy;
    int anchor;  // 0 start, 1 end, 2 middle
    bool leader;
  };
  std::vector<Candidate> candidates;
  const double mid = 0.5 * (ascent - descent);  // baseline offset that centres text vertically
  for (int level = 0; level <= 6; ++level) {
    const double shift = level * (font_size + 1.0);
    const bool leader = level >= 2;
    const double reach = gap + (level >= 2 ? 6.0 * (level - 1) : 0.0);
    if (level == 0) {
      candidates.push_back({gap, mid, 0, false});
      candidates.push_back({-gap, mid, 1, false});
      candidates.push_back({0.0, -gap - descent, 2, false});
      candidates.push_back({0.0, gap + ascent, 2, false});
    }
    for (double sign : {-1.0, 1.0}) {
      if (level == 0) continue;
      candidates.push_back({reach, mid + sign * shift, 0, leader});
      candidates.push_back({-reach, mid + sign * shift, 1, leader});
    }
  }
  std::vector<PlacedLabel> placed(markers.size());
  std::vector<Box> taken;
  for (std::size_t i : order) {
    const double width = char_width * static_cast<double>(utf8_length(labels[i]));
    double best_cost = std::numeric_limits<double>::infinity();
    for (const Candidate& c : candidates) {
      PlacedLabel p;
      p.x = markers[i].x + c.dx;
      p.y = markers[i].y + c.dy;
      p.anchor = c.anchor == 0 ? "start" : c.anchor == 1 ? "end" : "middle";
      p.leader = c.leader;
      const double left = c.anchor == 0 ? p.x : c.anchor == 1 ? p.x - width : p.x - width / 2;
      p.box = {left, p.y - ascent, left + width, p.y + descent};
      double cost = 0.0;
      for (const Box& o : obstacles) cost += p.box.overlap(o);
      for (const Box& o : taken) cost += 2.0 * p.box.overlap(o);
      for (const Box& o : lines) cost += 0.5 * p.box.overlap(o);
      const double inside = p.box.overlap(area);
      const double own = (p.box.x1 - p.box.x0) * (p.box.y1 - p.box.y0);
      cost += 4.0 * (own - inside);
      if (cost < best_cost - 1e-9) {
        best_cost = cost;
        placed[i] = p;
        if (cost <= 0.0) break;
      }
    }
    taken.push_back(placed[i].box);
  }
  return placed;
}

// One panel: accuracy loss (y) against `x_values`, placed with its top-left corner at (left, top).
struct PanelInput {
  std::string id;       // "size" or "latency": prefixes element ids
  std::string title;    // above the panel
  std::string x_label;  // with its unit
  std::vector<double> x_values;
  bool hollow_without_kernel = false;  // latency of kernel-less formats is the fp32 path's
};

inline void draw_panel(std::ostringstream& svg, const PanelInput& panel,
                       const std::vector<MethodResult>& rows, const std::vector<double>& loss,
                       double left, double top, const PlotOptions& o) {
  const double fs = o.font_size;
  const double plot_left = left + 6.2 * fs;
  const double plot_right = left + o.panel_width - 1.5 * fs;
  const double plot_top = top + 2.6 * fs;
  const double plot_bottom = top + o.panel_height - 4.0 * fs;

  std::vector<std::size_t> shown;
  std::vector<double> xs, ys;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (std::isfinite(panel.x_values[i]) && std::isfinite(loss[i])) {
      shown.push_back(i);
      xs.push_back(panel.x_values[i]);
      ys.push_back(loss[i]);
    }
  }

  svg << "<g id=\"" << panel.id << "-panel\">\n";
  svg << "<text x=\"" << px(0.5 * (plot_left + plot_right)) << "\" y=\"" << px(top + 1.3 * fs)
      << "\" text-anchor=\"middle\" font-size=\"" << px(1.2 * fs) << "\" font-weight=\"bold\">"
      << xml_escape(panel.title) << "</text>\n";
  svg << "<rect x=\"" << px(plot_left) << "\" y=\"" << px(plot_top) << "\" width=\""
      << px(plot_right - plot_left) << "\" height=\"" << px(plot_bottom - plot_top)
      << "\" fill=\"#fcfcfc\" stroke=\"#888888\" stroke-width=\"1\"/>\n";
  svg << "<text x=\"" << px(0.5 * (plot_left + plot_right)) << "\" y=\""
      << px(plot_bottom + 3.0 * fs) << "\" text-anchor=\"middle\" font-size=\"" << px(1.1 * fs)
      << "\">" << xml_escape(panel.x_label) << "</text>\n";
  const double y_label_x = left + 1.1 * fs;
  const double y_label_y = 0.5 * (plot_top + plot_bottom);
  svg << "<text x=\"" << px(y_label_x) << "\" y=\"" << px(y_label_y)
      << "\" text-anchor=\"middle\" font-size=\"" << px(1.1 * fs) << "\" transform=\"rotate(-90 "
      << px(y_label_x) << " " << px(y_label_y)
      << ")\">accuracy loss (bits/byte above fp32; lower is better)</text>\n";

  if (shown.empty()) {
    svg << "<text x=\"" << px(0.5 * (plot_left + plot_right)) << "\" y=\""
        << px(0.5 * (plot_top + plot_bottom)) << "\" text-anchor=\"middle\" font-size=\"" << px(fs)
        << "\" fill=\"#888888\">no finite values to plot</text>\n</g>\n";
    return;
  }

  const Axis ax = make_axis(xs, std::numeric_limits<double>::quiet_NaN(), plot_left, plot_right);
  const Axis ay = make_axis(ys, 0.0, plot_bottom, plot_top);

  // Grid, ticks and tick labels.
  for (double t : ax.ticks()) {
    const double x = ax.map(t);
    svg << "<line x1=\"" << px(x) << "\" y1=\"" << px(plot_top) << "\" x2=\"" << px(x) << "\" y2=\""
        << px(plot_bottom + 4.0) << "\" stroke=\"#e4e4e4\"/>\n";
    svg << "<line x1=\"" << px(x) << "\" y1=\"" << px(plot_bottom) << "\" x2=\"" << px(x)
        << "\" y2=\"" << px(plot_bottom + 4.0) << "\" stroke=\"#555555\"/>\n";
    svg << "<text x=\"" << px(x) << "\" y=\"" << px(plot_bottom + 4.0 + 1.1 * fs)
        << "\" text-anchor=\"middle\" font-size=\"" << px(0.95 * fs) << "\" fill=\"#333333\">"
        << fixed(t, ax.decimals()) << "</text>\n";
  }
  for (double t : ay.ticks()) {
    const double y = ay.map(t);
    svg << "<line x1=\"" << px(plot_left - 4.0) << "\" y1=\"" << px(y) << "\" x2=\""
        << px(plot_right) << "\" y2=\"" << px(y) << "\" stroke=\""
        << (t == 0.0 ? "#aaaaaa" : "#e4e4e4") << "\""
        << (t == 0.0 ? " stroke-dasharray=\"5 3\"" : "") << "/>\n";
    svg << "<line x1=\"" << px(plot_left - 4.0) << "\" y1=\"" << px(y) << "\" x2=\""
        << px(plot_left) << "\" y2=\"" << px(y) << "\" stroke=\"#555555\"/>\n";
    svg << "<text x=\"" << px(plot_left - 6.0) << "\" y=\"" << px(y + 0.35 * fs)
        << "\" text-anchor=\"end\" font-size=\"" << px(0.95 * fs) << "\" fill=\"#333333\">"
        << (t > 0.0 ? "+" : "") << fixed(t, ay.decimals()) << "</text>\n";
  }

  // Screen positions, the front and its staircase (lower-left boundary of the dominated region).
  std::vector<Point> screen(shown.size());
  std::vector<Point> data(shown.size());
  for (std::size_t k = 0; k < shown.size(); ++k) {
    data[k] = {xs[k], ys[k]};
    screen[k] = {ax.map(xs[k]), ay.map(ys[k])};
  }
  const std::vector<std::size_t> front = pareto_front(data);
  std::ostringstream path;
  std::vector<Box> lines;  // thin boxes around the staircase and the zero line, for the labels
  auto segment = [&](double x0, double y0, double x1, double y1) {
    lines.push_back({std::min(x0, x1) - 1.0, std::min(y0, y1) - 1.0, std::max(x0, x1) + 1.0,
                     std::max(y0, y1) + 1.0});
  };
  Point at{screen[front.front()].x, plot_top};
  path << "M" << px(at.x) << " " << px(at.y);
  for (std::size_t f = 0; f < front.size(); ++f) {
    const Point& p = screen[front[f]];
    if (f > 0) {
      path << " H" << px(p.x);
      segment(at.x, at.y, p.x, at.y);
      at.x = p.x;
    }
    path << " V" << px(p.y);
    segment(at.x, at.y, at.x, p.y);
    at.y = p.y;
  }
  path << " H" << px(plot_right);
  segment(at.x, at.y, plot_right, at.y);
  if (ay.lo < 0.0 && ay.hi > 0.0) segment(plot_left, ay.map(0.0), plot_right, ay.map(0.0));
  svg << "<path id=\"" << panel.id << "-staircase\" d=\"" << path.str()
      << "\" fill=\"none\" stroke=\"#333333\" stroke-opacity=\"0.75\" stroke-width=\"1.3\"/>\n";

  // Labels (front members first, so they get the best places), then leaders, markers, rings.
  const double radius = 4.5;
  std::vector<std::string> names(shown.size());
  for (std::size_t k = 0; k < shown.size(); ++k) names[k] = rows[shown[k]].name;
  std::vector<std::size_t> order = front;
  std::vector<char> on_front(shown.size(), 0);
  for (std::size_t f : front) on_front[f] = 1;
  for (std::size_t k = 0; k < shown.size(); ++k) {
    if (!on_front[k]) order.push_back(k);
  }
  const Box area{plot_left + 2.0, plot_top + 2.0, plot_right - 2.0, plot_bottom - 2.0};
  const std::vector<PlacedLabel> labels =
      place_labels(screen, names, order, lines, area, 0.95 * fs, radius);

  for (std::size_t k = 0; k < shown.size(); ++k) {
    const PlacedLabel& l = labels[k];
    if (!l.leader) continue;
    const double tx = std::clamp(screen[k].x, l.box.x0, l.box.x1);
    const double ty = std::clamp(screen[k].y, l.box.y0, l.box.y1);
    svg << "<line x1=\"" << px(screen[k].x) << "\" y1=\"" << px(screen[k].y) << "\" x2=\"" << px(tx)
        << "\" y2=\"" << px(ty) << "\" stroke=\"#999999\" stroke-width=\"0.7\"/>\n";
  }
  for (std::size_t k = 0; k < shown.size(); ++k) {
    const MethodResult& r = rows[shown[k]];
    const char* colour = families()[family_index(r.family)].colour;
    const bool hollow = panel.hollow_without_kernel && !r.has_kernel;
    svg << "<circle id=\"" << panel.id << "-marker-" << shown[k] << "\" class=\"marker\" cx=\""
        << px(screen[k].x) << "\" cy=\"" << px(screen[k].y) << "\" r=\"" << px(radius)
        << "\" fill=\"" << (hollow ? "#ffffff" : colour) << "\" stroke=\""
        << (hollow ? colour : "#ffffff") << "\" stroke-width=\"" << (hollow ? "1.8" : "0.8")
        << "\"><title>" << xml_escape(r.name) << ": " << fixed(xs[k], 3) << ", loss "
        << (ys[k] >= 0.0 ? "+" : "") << fixed(ys[k], 4) << " bits/byte</title></circle>\n";
  }
  for (std::size_t f : front) {
    svg << "<circle id=\"" << panel.id << "-front-" << shown[f] << "\" class=\"front\" cx=\""
        << px(screen[f].x) << "\" cy=\"" << px(screen[f].y) << "\" r=\"" << px(radius + 2.5)
        << "\" fill=\"none\" stroke=\"#222222\" stroke-width=\"1\"/>\n";
  }
  for (std::size_t k = 0; k < shown.size(); ++k) {
    const PlacedLabel& l = labels[k];
    svg << "<text x=\"" << px(l.x) << "\" y=\"" << px(l.y) << "\" text-anchor=\"" << l.anchor
        << "\" font-size=\"" << px(0.95 * fs) << "\" fill=\"#222222\""
        << (on_front[k] ? " font-weight=\"bold\"" : "") << ">" << xml_escape(names[k])
        << "</text>\n";
  }
  svg << "</g>\n";
}

}  // namespace detail

// The comparison plot of `rows` (pipeline::compare's result; rows[0] is the baseline every
// accuracy loss is measured from, "fp32 (original)"): two panels side by side, accuracy loss
// against size_mb and against latency_ms, one marker per row coloured by family (quantization,
// pruning, low-rank, baseline, anything else "other"), labelled with the method name, the Pareto
// front of each panel ringed and joined by a dashed staircase, and a legend. A row whose value
// for a panel is NaN or infinite is left out of that panel and named in a note below the legend.
// In the latency panel, methods without a kernel (has_kernel false) are drawn hollow: their
// latency is the dequantized fp32 path's. Element ids: "<panel>-marker-<row>" for markers and
// "<panel>-front-<row>" for front rings, panel "size" or "latency". Throws ArgumentError for an
// empty `rows` or non-positive panel sizes or font size.
inline std::string comparison_svg(const std::vector<MethodResult>& rows,
                                  const PlotOptions& options = {}) {
  require<ArgumentError>(!rows.empty(),
                         "comparison_svg: rows is empty; expected the baseline row first");
  require<ArgumentError>(options.panel_width >= 200.0 && options.panel_height >= 150.0,
                         "comparison_svg: panel size ", options.panel_width, " x ",
                         options.panel_height, " is too small; expected at least 200 x 150");
  require<ArgumentError>(options.font_size > 0.0 && options.font_size <= 40.0,
                         "comparison_svg: font_size ", options.font_size, " is outside (0, 40]");
  const double fs = options.font_size;
  const double baseline = rows.front().bits_per_byte;
  std::vector<double> loss(rows.size());
  std::vector<double> size(rows.size());
  std::vector<double> latency(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    loss[i] = rows[i].bits_per_byte - baseline;
    size[i] = rows[i].size_mb;
    latency[i] = rows[i].latency_ms;
  }

  // Notes: what is not plotted and why; what the hollow markers mean.
  std::vector<std::string> notes;
  notes.push_back(
      "accuracy loss: validation bits/byte minus " + rows.front().name +
      "'s; the Pareto front (ringed, bold labels, joined by the staircase) holds the methods "
      "no other beats on both axes.");
  bool any_without_kernel = false;
  for (const MethodResult& r : rows) any_without_kernel |= !r.has_kernel;
  if (any_without_kernel)
    notes.push_back(
        "hollow markers (latency panel): no kernel for this format yet, the latency is the "
        "dequantized fp32 path's.");
  std::string skipped;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::vector<std::string> missing;
    if (!std::isfinite(loss[i])) missing.emplace_back("bits/byte");
    if (!std::isfinite(size[i])) missing.emplace_back("size");
    if (!std::isfinite(latency[i])) missing.emplace_back("latency");
    if (missing.empty()) continue;
    if (!skipped.empty()) skipped += "; ";
    skipped += rows[i].name + " (";
    for (std::size_t m = 0; m < missing.size(); ++m) skipped += (m ? ", " : "") + missing[m];
    skipped += ")";
  }
  if (!skipped.empty()) notes.push_back("not plotted, non-finite value: " + skipped);
  notes = detail::wrap_lines(
      notes, static_cast<std::size_t>(
                 std::max(20.0, (2.0 * options.panel_width - 6.0 * fs) / (0.56 * 0.95 * fs))));

  const double title_height = 2.6 * fs;
  const double legend_height = 2.4 * fs;
  const double note_line = 1.5 * fs;
  const double width = 2.0 * options.panel_width + 2.0 * fs;
  const double panels_top = title_height;
  const double legend_top = panels_top + options.panel_height;
  const double height =
      legend_top + legend_height + note_line * static_cast<double>(notes.size()) + fs;

  std::ostringstream svg;
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" << detail::px(width)
      << "\" height=\"" << detail::px(height) << "\" viewBox=\"0 0 " << detail::px(width) << " "
      << detail::px(height) << "\" font-family=\"sans-serif\">\n";
  svg << "<title>" << detail::xml_escape(options.title) << "</title>\n";
  svg << "<rect x=\"0\" y=\"0\" width=\"" << detail::px(width) << "\" height=\""
      << detail::px(height) << "\" fill=\"#ffffff\"/>\n";
  svg << "<text x=\"" << detail::px(width / 2) << "\" y=\"" << detail::px(1.7 * fs)
      << "\" text-anchor=\"middle\" font-size=\"" << detail::px(1.4 * fs)
      << "\" font-weight=\"bold\">" << detail::xml_escape(options.title) << "</text>\n";

  detail::PanelInput by_size{"size", "accuracy loss against model size", "model size (MB)", size,
                             false};
  detail::PanelInput by_latency{"latency", "accuracy loss against decode latency",
                                "decode latency (ms/token)", latency, true};
  detail::draw_panel(svg, by_size, rows, loss, fs, panels_top, options);
  detail::draw_panel(svg, by_latency, rows, loss, fs + options.panel_width, panels_top, options);

  // Legend: the families present, then the front's symbols.
  std::vector<char> present(detail::families().size(), 0);
  for (const MethodResult& r : rows) present[detail::family_index(r.family)] = 1;
  double x = 6.2 * fs + fs;
  const double y = legend_top + 1.2 * fs;
  svg << "<g id=\"legend\" font-size=\"" << detail::px(fs) << "\">\n";
  for (std::size_t f = 0; f < present.size(); ++f) {
    if (!present[f]) continue;
    const detail::Family& family = detail::families()[f];
    svg << "<circle cx=\"" << detail::px(x) << "\" cy=\"" << detail::px(y - 0.35 * fs)
        << "\" r=\"4.5\" fill=\"" << family.colour << "\"/>\n"
        << "<text x=\"" << detail::px(x + 8.0) << "\" y=\"" << detail::px(y) << "\">" << family.name
        << "</text>\n";
    x += 8.0 + 0.6 * fs * static_cast<double>(std::string(family.name).size()) + 2.0 * fs;
  }
  svg << "<circle cx=\"" << detail::px(x) << "\" cy=\"" << detail::px(y - 0.35 * fs)
      << "\" r=\"7\" fill=\"none\" stroke=\"#222222\" stroke-width=\"1\"/>\n"
      << "<text x=\"" << detail::px(x + 11.0) << "\" y=\"" << detail::px(y)
      << "\">on the Pareto front</text>\n";
  x += 11.0 + 0.6 * fs * 19.0 + 2.0 * fs;
  svg << "<line x1=\"" << detail::px(x - 6.0) << "\" y1=\"" << detail::px(y - 0.35 * fs)
      << "\" x2=\"" << detail::px(x + 18.0) << "\" y2=\"" << detail::px(y - 0.35 * fs)
      << "\" stroke=\"#333333\" stroke-opacity=\"0.75\" stroke-width=\"1.3\"/>\n"
      << "<text x=\"" << detail::px(x + 24.0) << "\" y=\"" << detail::px(y)
      << "\">front staircase</text>\n";
  x += 24.0 + 0.6 * fs * 15.0 + 2.0 * fs;
  if (any_without_kernel) {
    svg << "<circle cx=\"" << detail::px(x) << "\" cy=\"" << detail::px(y - 0.35 * fs)
        << "\" r=\"4.5\" fill=\"#ffffff\" stroke=\"#555555\" stroke-width=\"1.8\"/>\n"
        << "<text x=\"" << detail::px(x + 8.0) << "\" y=\"" << detail::px(y)
        << "\">no kernel (fp32 latency)</text>\n";
  }
  svg << "</g>\n";

  svg << "<g id=\"notes\" font-size=\"" << detail::px(0.95 * fs) << "\" fill=\"#444444\">\n";
  for (std::size_t n = 0; n < notes.size(); ++n) {
    svg << "<text x=\"" << detail::px(6.2 * fs + fs) << "\" y=\""
        << detail::px(legend_top + legend_height + note_line * static_cast<double>(n) + fs) << "\">"
        << detail::xml_escape(notes[n]) << "</text>\n";
  }
  svg << "</g>\n</svg>\n";
  return svg.str();
}

// Writes comparison_svg(rows, options) to `path` atomically (io::write_file_atomic: a failure
// leaves any existing file untouched). Throws IoError when the file system refuses.
inline void write_comparison_svg(const std::string& path, const std::vector<MethodResult>& rows,
                                 const PlotOptions& options = {}) {
  const std::string text = comparison_svg(rows, options);
  io::write_file_atomic(path, [&](io::ByteWriter& out) { out.write(text.data(), text.size()); });
}

}  // namespace slim::pipeline
