/** Types for html-encoding-sniffer 6 (the package ships none): the HTML Standard's encoding sniffing. */
declare module 'html-encoding-sniffer' {
  /** The encoding name (not a label) for an HTML (or, with `xml`, any) byte stream: BOM, then the transport label, then `<meta>` prescan, then the default. */
  export default function sniffEncoding(
    bytes: Uint8Array,
    options?: { xml?: boolean; transportLayerEncodingLabel?: string; defaultEncoding?: string },
  ): string;
}
