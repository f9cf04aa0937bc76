import { writeFile } from "node:fs/promises";

/**
 * A small SVG line chart (no dependency): x and y axes with ticks, one polyline with dots per
 * series, a legend. Enough for "time against video length", readable on GitHub and in a browser.
 */

export interface Series {
  name: string;
  color: string;
  points: { x: number; y: number }[];
}

export interface Chart {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
}

const WIDTH = 720;
const HEIGHT = 420;
const MARGIN = { left: 70, right: 30, top: 70, bottom: 60 };

/** Round tick steps: 1, 2 or 5 × a power of ten, about `count` of them up to `max`. */
function ticks(max: number, count = 6): number[] {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const out: number[] = [];
  for (let v = 0; v <= max + step / 2; v += step) out.push(Number(v.toPrecision(10)));
  return out;
}

const xmlText = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function renderChart(chart: Chart): string {
  const all = chart.series.flatMap((s) => s.points);
  const xTicks = ticks(Math.max(...all.map((p) => p.x), 1));
  const yTicks = ticks(Math.max(...all.map((p) => p.y), 1));
  const xMax = xTicks.at(-1) as number;
  const yMax = yTicks.at(-1) as number;
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (v: number) => MARGIN.left + (v / xMax) * plotW;
  const y = (v: number) => MARGIN.top + plotH - (v / yMax) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<title>${xmlText(chart.title)}</title>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${xmlText(chart.title)}</text>`,
  ];
  if (chart.subtitle) {
    out.push(
      `<text x="${WIDTH / 2}" y="44" text-anchor="middle" fill="#555">${xmlText(chart.subtitle)}</text>`,
    );
  }
  for (const t of xTicks) {
    out.push(
      `<line x1="${x(t)}" y1="${MARGIN.top}" x2="${x(t)}" y2="${MARGIN.top + plotH}" stroke="#eee"/>`,
      `<text x="${x(t)}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${t}</text>`,
    );
  }
  for (const t of yTicks) {
    out.push(
      `<line x1="${MARGIN.left}" y1="${y(t)}" x2="${MARGIN.left + plotW}" y2="${y(t)}" stroke="#eee"/>`,
      `<text x="${MARGIN.left - 8}" y="${y(t) + 4}" text-anchor="end">${t}</text>`,
    );
  }
  out.push(
    `<line x1="${MARGIN.left}" y1="${MARGIN.top + plotH}" x2="${MARGIN.left + plotW}" y2="${MARGIN.top + plotH}" stroke="black"/>`,
    `<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${MARGIN.top + plotH}" stroke="black"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 16}" text-anchor="middle">${xmlText(chart.xLabel)}</text>`,
    `<text transform="translate(18 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${xmlText(chart.yLabel)}</text>`,
  );
  for (const [i, s] of chart.series.entries()) {
    const points = [...s.points].sort((a, b) => a.x - b.x);
    out.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${points.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(" ")}"/>`,
      ...points.map(
        (p) => `<circle cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="3.5" fill="${s.color}"/>`,
      ),
      `<rect x="${MARGIN.left + 16}" y="${MARGIN.top + 8 + i * 20}" width="14" height="4" fill="${s.color}"/>`,
      `<text x="${MARGIN.left + 36}" y="${MARGIN.top + 14 + i * 20}">${xmlText(s.name)}</text>`,
    );
  }
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

export async function writeChart(file: string, chart: Chart): Promise<void> {
  await writeFile(file, renderChart(chart));
}
