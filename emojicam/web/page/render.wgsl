// emojicam's render pass: each cell's emoji tile from the atlas over the cell's background, as the Python
// compositor draws it (premultiplied tile colour + (1 - alpha) * background), beside or instead of the picture the
// network saw. One triangle covers the canvas; every pixel finds its own cell, so there is no loop over tiles.

struct Params {
  cols: u32,
  rows: u32,
  tile: u32,        // pixels a tile on the canvas, the atlas's tile size
  atlas_cols: u32,  // tiles per row of the atlas
  view: u32,        // 0 emoji, 1 side by side (the picture left), 2 the picture
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> picks: array<i32>;  // each cell's emoji, row-major
@group(0) @binding(2) var<storage, read> back: array<f32>;   // each cell's background, RGB 0..255
@group(0) @binding(3) var atlas: texture_2d<f32>;            // straight (not premultiplied) RGBA tiles
@group(0) @binding(4) var picture: texture_2d<f32>;          // the frame function's input
@group(0) @binding(5) var picture_sampler: sampler;

@vertex
fn vs(@builtin(vertex_index) i: u32) -> @builtin(position) vec4f {
  let corner = vec2f(f32((i << 1u) & 2u), f32(i & 2u));  // (0,0) (2,0) (0,2): a triangle over the whole canvas
  return vec4f(corner * 2.0 - 1.0, 0.0, 1.0);
}

@fragment
fn fs(@builtin(position) at: vec4f) -> @location(0) vec4f {
  let size = vec2u(params.cols, params.rows) * params.tile;
  var p = vec2u(at.xy);
  let left = params.view == 1u && p.x < size.x;
  if (params.view == 1u && !left) {
    p.x -= size.x;
  }
  if (params.view == 2u || left) {
    return vec4f(textureSampleLevel(picture, picture_sampler, (vec2f(p) + 0.5) / vec2f(size), 0.0).rgb, 1.0);
  }
  let cell = p / params.tile;
  let n = cell.y * params.cols + cell.x;
  let emoji = u32(picks[n]);
  let texel = vec2u(emoji % params.atlas_cols, emoji / params.atlas_cols) * params.tile + p % params.tile;
  let tile = textureLoad(atlas, texel, 0);
  let behind = vec3f(back[3u * n], back[3u * n + 1u], back[3u * n + 2u]) / 255.0;
  return vec4f(tile.rgb * tile.a + (1.0 - tile.a) * behind, 1.0);
}
