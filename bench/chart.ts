// A dependency-free SVG bar chart of requests/s per subject and scenario, for docs/BENCHMARKS.md.

/** One bar group: a subject label and one value per series. */
export interface ChartGroup {
  readonly label: string
  readonly values: readonly number[]
}

const COLORS = ['#2b6cb0', '#dd6b20', '#38a169', '#805ad5']

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** Horizontal grouped bars: one group per subject, one bar per series, values labelled at the bar's end. */
export function barChartSvg(
  title: string,
  series: readonly string[],
  groups: readonly ChartGroup[],
  unit: string,
  format: (value: number) => string = (value) => Math.round(value).toLocaleString('en-US'),
): string {
  const labelWidth = 300
  const plotWidth = 520
  const bar = 14
  const gap = 10
  const top = 56
  const groupHeight = series.length * bar + gap
  const height = top + groups.length * groupHeight + 30
  const width = labelWidth + plotWidth + 90
  const max = Math.max(1, ...groups.flatMap((g) => g.values.filter(Number.isFinite)))
  const parts: string[] = []
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  )
  series.forEach((name, i) => {
    const x = labelWidth + i * 150
    parts.push(
      `<rect x="${x}" y="30" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`,
      `<text x="${x + 16}" y="40">${escapeXml(name)}</text>`,
    )
  })
  groups.forEach((group, g) => {
    const y0 = top + g * groupHeight
    parts.push(
      `<text x="${labelWidth - 8}" y="${y0 + (series.length * bar) / 2 + 4}" text-anchor="end">${escapeXml(group.label)}</text>`,
    )
    group.values.forEach((value, i) => {
      const y = y0 + i * bar
      if (!Number.isFinite(value)) {
        parts.push(`<text x="${labelWidth + 4}" y="${y + bar - 3}" fill="#888">not measured</text>`)
        return
      }
      const w = Math.max(1, (value / max) * plotWidth)
      parts.push(
        `<rect x="${labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${bar - 2}" fill="${COLORS[i % COLORS.length]}"/>`,
        `<text x="${(labelWidth + w + 4).toFixed(1)}" y="${y + bar - 3}">${escapeXml(format(value))}</text>`,
      )
    })
  })
  parts.push(
    `<line x1="${labelWidth}" y1="${top - 4}" x2="${labelWidth}" y2="${height - 26}" stroke="#333"/>`,
    `<text x="${labelWidth}" y="${height - 8}" fill="#555">${escapeXml(unit)}</text>`,
    '</svg>',
  )
  return `${parts.join('\n')}\n`
}
