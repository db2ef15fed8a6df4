import { defineConfig } from "vite";

// The console is embedded into the proctor binary (build.rs) and served at the API's origin:
// no CDN, no source maps, hashed file names under assets/ (cached as immutable by proctor).
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    // `npm run dev` against a running proctor: PROCTOR_API=http://127.0.0.1:8080 npx vite
    proxy: { "/api": process.env.PROCTOR_API ?? "http://127.0.0.1:8080" },
  },
});
