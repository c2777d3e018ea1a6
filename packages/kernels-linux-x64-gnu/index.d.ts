/** The directory holding this platform's prebuilt shared libraries (lib/*.so). */
export declare const libDir: string;
