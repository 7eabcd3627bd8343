// emojicam's cut: the camera picture (copied whole into a texture by copyExternalImageToTexture, a copy on the GPU)
// centre-cropped to the grid's aspect ratio, mirrored where asked, and resized to the grid's patch resolution by
// the exact area average that OpenCV's INTER_AREA and the Python engine use: each output pixel is the mean of the
// source pixels its box covers, each weighted by the share of it inside the box. JavaScript touches no pixel.

struct Params {
  box: vec4f,   // x, y of the crop's top-left corner in source pixels; source pixels per output pixel across, down
  width: u32,   // output pixels across
  mirror: u32,  // 1: output column x shows the crop's column width - 1 - x
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var source: texture_2d<f32>;

@vertex
fn vs(@builtin(vertex_index) i: u32) -> @builtin(position) vec4f {
  let corner = vec2f(f32((i << 1u) & 2u), f32(i & 2u));  // (0,0) (2,0) (0,2): a triangle over the whole target
  return vec4f(corner * 2.0 - 1.0, 0.0, 1.0);
}

@fragment
fn fs(@builtin(position) at: vec4f) -> @location(0) vec4f {
  var out = floor(at.xy);
  if (params.mirror == 1u) {
    out.x = f32(params.width) - 1.0 - out.x;
  }
  let a = params.box.xy + out * params.box.zw;  // the box in source pixels
  let b = a + params.box.zw;
  let last = vec2i(textureDimensions(source)) - 1;
  var sum = vec3f(0.0);
  for (var y = i32(floor(a.y)); f32(y) < b.y; y++) {
    let wy = min(b.y, f32(y + 1)) - max(a.y, f32(y));
    for (var x = i32(floor(a.x)); f32(x) < b.x; x++) {
      let wx = min(b.x, f32(x + 1)) - max(a.x, f32(x));
      sum += wx * wy * textureLoad(source, clamp(vec2i(x, y), vec2i(0), last), 0).rgb;
    }
  }
  return vec4f(sum / (params.box.z * params.box.w), 1.0);
}
