import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` serves the panel with hot reload and passes the API, the
// event stream and SIP over WebSocket to a running `callbridge serve`
// (CALLBRIDGE_URL, default http://127.0.0.1:8000).
const server = process.env.CALLBRIDGE_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", sourcemap: false, chunkSizeWarningLimit: 800 },
  server: {
    host: "127.0.0.1",
    proxy: {
      "/api": { target: server, changeOrigin: false },
      "/ws": { target: server.replace(/^http/, "ws"), ws: true },
    },
  },
});
