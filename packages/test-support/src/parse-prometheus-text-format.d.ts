// The package ships no types; prometheus.ts names the shape it returns.
declare module 'parse-prometheus-text-format' {
  const parse: (text: string) => unknown[];
  export default parse;
}
